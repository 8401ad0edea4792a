"""Shared test tools: real service URLs, a running engine, an MLLP sender, waiting."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import pytest
import yaml
from sqlalchemy import create_engine, text

from channels.mllp.client import MllpConnection, send_all
from core.settings import load_settings
from engine.runtime import ALL_ROLES, EngineRuntime

REPO = Path(__file__).resolve().parents[1]
CONFORMANCE = Path(os.environ.get("MCH_CONFORMANCE_DIR", REPO.parent / "shared" / "conformance" / "hl7v2"))
CHINESE = CONFORMANCE / "chinese-synthetic"

AMQP_URL = os.environ.get("MCH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
PG_URL = os.environ.get("MCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


REPORT: list[str] = []


class EngineLog:
    """Where the engine's JSON log lines go during the tests (conftest configures logging into it
    once): a test takes `mark()` before acting and reads `events(since=mark)` after.

    One stream for the whole session, because structlog loggers keep the stream they first wrote to.
    """

    def __init__(self) -> None:
        self._text: list[str] = []
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            self._text.append(text)
        return len(text)

    def flush(self) -> None:
        pass

    def mark(self) -> int:
        with self._lock:
            return len(self._text)

    def events(self, since: int = 0, name: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            written = "".join(self._text[since:])
        events = [json.loads(line) for line in written.splitlines() if line.strip()]
        return [e for e in events if name is None or e.get("event") == name]


ENGINE_LOG = EngineLog()
"""Lines printed at the end of the test run (see conftest.pytest_terminal_summary)."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(message: str) -> NoReturn:
    """A tool or service a test needs is missing: skipped on a laptop, a failure under CI=true."""
    if in_ci():
        pytest.fail(f"{message} (CI=true)")
    pytest.skip(message)


def require_service(host: str, port: int, name: str) -> None:
    """Skip on a laptop without the service; under CI=true a missing service is a failure."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as exc:
        unavailable(f"{name} on {host}:{port} is not running: {exc}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def pg_schema() -> Iterator[str]:
    """A fresh PostgreSQL schema; yields a URL whose search_path points at it."""
    require_service("127.0.0.1", 5432, "PostgreSQL")
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    sep = "&" if "?" in PG_URL else "?"
    try:
        yield f"{PG_URL}{sep}options=-csearch_path%3D{name}"
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@contextmanager
def engine_backend(kind: str, folder: Path) -> Iterator[tuple[str, str]]:
    """(database URL, broker URL) of `kind`: "embedded" (SQLite in `folder`, the in-process
    bus) or "postgresql+rabbitmq" (a fresh schema, the test RabbitMQ)."""
    if kind == "embedded":
        yield f"sqlite:///{folder / 'engine.db'}", "memory://"
        return
    require_service("127.0.0.1", 5672, "RabbitMQ")
    with pg_schema() as url:
        yield url, AMQP_URL


@contextmanager
def engine_database(kind: str, directory: Path) -> Iterator[Any]:
    """An engine database of `kind` ("sqlite" in `directory`, or "postgresql" in a fresh schema)."""
    from core.database import make_engine

    if kind == "sqlite":
        engine = make_engine(f"sqlite:///{directory / 'engine.db'}")
        yield engine
        engine.dispose()
        return
    with pg_schema() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def write_routes(
    directory: Path,
    *,
    database: str,
    broker: str = "memory://",
    queue_prefix: str | None = None,
    channels: dict[str, dict[str, Any]] | None = None,
    extra: str = "",
    partitions: int = 1,
    mappings: Path = REPO / "mappings",
    destinations: Sequence[str] = ("record_store",),
    lab_to: str = "record_store",
) -> Path:
    """A routes.yaml for a test: the shipped routes and mappings (or a copy of them in
    `mappings`), test ports and stores; the mappings folder is allowed explicitly
    (`engine.allowed_paths`). Lab results go to `lab_to`, persons to record_store."""
    channels = channels or {"hospital": {"encoding": "utf-8"}, "lis_gbk": {"encoding": "gb18030"}}
    lines = [
        "version: 1",
        "engine:",
        f"  broker: {broker!r}",
        f"  database: {database!r}",
        f"  queue_prefix: {queue_prefix or 't' + uuid.uuid4().hex[:10]}",
        # The shipped mappings are read from the repository, outside this routes.yaml's folder.
        f"  allowed_paths: [{str(mappings)!r}]",
        "channels:",
    ]
    for name, opts in channels.items():
        lines += [
            f"  {name}:",
            "    type: mllp",
            f"    listen: 127.0.0.1:{opts.get('port') or free_port()}",
        ]
        lines += [f"    {k}: {v}" for k, v in opts.items() if k != "port"]
    names = ", ".join(channels)
    lines += [
        "routes:",
        "  - name: persons",
        f"    from: [{names}]",
        "    message_type: [ADT^A01, ADT^A04, ADT^A08]",
        f"    mapping: {mappings / 'his/adt_person.yaml'}",
        "    to: [record_store]",
        "  - name: lab-results",
        f"    from: [{names}]",
        "    message_type: ORU^R01",
        f"    mapping: {mappings / 'lis/oru_r01.yaml'}",
        f"    to: [{lab_to}]",
        "destinations:",
    ]
    lines += [
        f"  {name}: {{type: record_store" + (f", partitions: {partitions}" if partitions > 1 else "") + "}"
        for name in destinations
    ]
    path = directory / "routes.yaml"
    path.write_text("\n".join(lines) + "\n" + extra, encoding="utf-8")
    return path


class RunningEngine:
    """The engine in a thread of its own, with its own event loop, as `mch-engine run` runs it."""

    def __init__(
        self,
        routes: Path,
        env: dict[str, str] | None = None,
        *,
        roles: frozenset[str] = ALL_ROLES,
        partitions: frozenset[int] | None = None,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.settings = load_settings(routes, env=env)
        self.runtime = EngineRuntime(self.settings, roles, partitions=partitions, shard=shard)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> RunningEngine:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.runtime.start(), self.loop).result(60)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runtime.stop(), self.loop).result(60)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    def port(self, channel: str = "hospital") -> int:
        return self.runtime.ports()[channel]

    @property
    def journal(self) -> Any:
        return self.runtime.journal_engine

    def store(self, destination: str = "record_store") -> Any:
        d = self.settings.destinations[destination]
        return self.runtime.engine_for(d.database or self.settings.engine.database)

    def send(
        self, payloads: list[bytes], channel: str = "hospital", concurrency: int = 1
    ) -> list[bytes | None]:
        results = asyncio.run(send_all("127.0.0.1", self.port(channel), payloads, concurrency=concurrency))
        return [r.ack for r in results]

    def connect(self, channel: str = "hospital") -> MllpConnection:
        return asyncio.run(MllpConnection.open("127.0.0.1", self.port(channel)))


def shipped_mappings(*, included: bool = False) -> list[Path]:
    """The mapping files under mappings/: not their tests, not the tables that declare a
    `kind:` (rule tables, the education catalogue), and, unless `included`, not the rules of
    common/ that mappings include."""
    found = []
    for path in sorted((REPO / "mappings").rglob("*.yaml")):
        if path.name.endswith("_test.yaml") or ("common" in path.parts and not included):
            continue
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not (isinstance(data, dict) and "kind" in data):
            found.append(path)
    return found


def shipped_env(directory: Path) -> dict[str, str]:
    """The variables that point the shipped routes.yaml at this test's SQLite database and
    free ports."""
    return {
        "MCH_DB_URL": f"sqlite:///{directory}/engine.db",
        "MCH_MLLP_LISTEN": f"127.0.0.1:{free_port()}",
        "MCH_MLLP_GBK_LISTEN": f"127.0.0.1:{free_port()}",
        "MCH_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
    }


def shipped_routes_copy(directory: Path, keep: Sequence[str] = ()) -> Path:
    """The shipped routes.yaml and a copy of mappings/ in `directory`, with `shipped_env`
    written in: what an engineer edits, run as the hospital runs it (and by CLI processes,
    which do not see the test's variables). The variables in `keep` stay `${…}`."""
    shutil.copytree(REPO / "mappings", directory / "mappings")
    text = (REPO / "routes.yaml").read_text(encoding="utf-8")
    for variable, value in shipped_env(directory).items():
        if variable in keep:
            continue
        text, found = re.subn(r"\$\{" + variable + r":-[^}]*\}", value, text)
        assert found == 1, variable
    routes = directory / "routes.yaml"
    routes.write_text(text, encoding="utf-8")
    return routes


def refused(port: int) -> bool:
    """A new TCP connection to 127.0.0.1:`port` is refused: nobody listens there."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def wait_until(check: Callable[[], Any], timeout: float = 30.0, interval: float = 0.05) -> Any:
    """Poll until `check()` is truthy; fail with its last value."""
    deadline = time.monotonic() + timeout
    value = check()
    while not value and time.monotonic() < deadline:
        time.sleep(interval)
        value = check()
    assert value, f"condition not met within {timeout}s (last value {value!r})"
    return value


def scalar(engine: Any, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def delivery_rows(engine: RunningEngine, destination: str) -> list[tuple[str, int]]:
    """(status, attempts) of every journal delivery to `destination`."""
    with engine.journal.connect() as conn:
        rows = conn.execute(
            text("select status, attempts from journal_deliveries where destination = :d"), {"d": destination}
        )
        return [(r.status, r.attempts) for r in rows]


def dead_letter_reasons(engine: RunningEngine) -> list[str]:
    """The reasons of the deliver-stage dead letters, oldest first."""
    with engine.journal.connect() as conn:
        query = text("select reason from dead_letters where stage = 'deliver' order by id")
        return [r[0] for r in conn.execute(query)]


def attempt_errors(engine: RunningEngine) -> list[str]:
    """The error of every failed delivery attempt, in order."""
    with engine.journal.connect() as conn:
        return [r[0] for r in conn.execute(text("select error from delivery_attempts order by id"))]


def msa(ack: bytes | None, encoding: str = "utf-8") -> tuple[str, str, str]:
    """(MSA-1, MSA-2, human text) of an ACK."""
    from channels.mllp.ack import parse_ack

    assert ack is not None, "no ACK received"
    info = parse_ack(ack.decode(encoding, errors="replace"))
    return info.code, info.control_id, info.text


def hl7(*segments: str) -> bytes:
    return ("\r".join(segments) + "\r").encode("utf-8")


def adt(
    control_id: str,
    his_id: str,
    *,
    event: str = "A04",
    when: str = "20240321083200",
    name: str = "王小红",
    extra_ids: str = "",
) -> bytes:
    """An ADT registration (A04) or update (A08) of one HIS patient: one Person record."""
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|{when}||ADT^{event}^ADT_A01|{control_id}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        f"EVN|{event}|{when}",
        f"PID|1||{his_id}^^^HIS^PI{extra_ids}||{name}^^^^^^L||19940315|F",
    )


def oru(control_id: str, filler: str, his_id: str) -> bytes:
    """A LIS blood count: one LabResult `lab:LIS:10:<filler>` for one HIS patient."""
    return hl7(
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|{control_id}|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
        f"PID|1||{his_id}^^^HIS^PI||王小红||19940315|F",
        f"OBR|1|JC1|{filler}|BLD01^血常规^L|||20240321083000||||||||BLD^全血|||||||20240321113000||HEM|F",
        "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F|||20240321112000",
    )


_journal_ids = iter(range(1, 1_000_000))


def stored_envelope(
    kind: str, record_id: str, person: dict[str, Any], at: str, **fields: Any
) -> dict[str, Any]:
    """An envelope as the record store receives it: a canonical record of `kind` from `hospital`."""
    from transforms.validate import canonical

    journal_id = next(_journal_ids)
    return {
        "journal_id": journal_id,
        "channel": "hospital",
        "control_id": f"C{journal_id}",
        "record_type": kind,
        "record_id": record_id,
        "event_time": at,
        "record": canonical(kind, record_id, {"person": person, **fields}),
    }


WECHAT_PATIENT_DESTINATION: dict[str, Any] = {
    "type": "wechat",
    "notices": [
        {
            "record_type": "LabResult",
            "event": "report_ready",
            "template_id": "TPL_REPORT",
            "keys": {"thing1": {"type": "thing", "value": "{record.order.display}"}},
        }
    ],
}
"""The smallest patient `wechat` destination's settings (one report-ready rule)."""
