"""The engine under test: its stores, its routes.yaml and its processes.

Each measurement gets a `Stack` of its own — a fresh SQLite file, or a fresh
PostgreSQL schema and a unique RabbitMQ queue prefix — so a point never pays for the
journal another point left behind, and nothing is left on the services afterwards.
The engine runs exactly as an operator runs it, `python -m engine.cli run --config
<generated routes.yaml>` (with `--role` and `--partitions` where a scenario splits it
over several processes), with the repository's routes and mappings; only the addresses
are the bench's, and on RabbitMQ + PostgreSQL the record store is split into
`PARTITIONS` queues so that deliver processes can share it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Engine, create_engine, func, select, text

REPO = Path(__file__).resolve().parents[1]

AMQP_URL = os.environ.get("MCH_BENCH_AMQP_URL") or os.environ.get(
    "MCH_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//"
)
PG_URL = os.environ.get("MCH_BENCH_PG_URL") or os.environ.get(
    "MCH_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

BACKENDS = {
    "embedded": "SQLite + memory:// (embedded default)",
    "rabbitmq-pg": "RabbitMQ + PostgreSQL",
}

PARTITIONS = 4
"""Record-store partitions in the bench's routes on RabbitMQ + PostgreSQL (the embedded
default keeps the shipped routes.yaml's single queue): enough for two deliver processes
to take two each."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def reachable(url_host_port: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(url_host_port, timeout=2):
            return True
    except OSError:
        return False


def services_up() -> str:
    """'' when RabbitMQ and PostgreSQL answer, else which one does not."""
    from sqlalchemy.engine import make_url

    pg = make_url(PG_URL)
    amqp_host = AMQP_URL.split("@")[-1].split("/")[0]
    host, _, port = amqp_host.partition(":")
    missing = []
    if not reachable((host or "127.0.0.1", int(port or 5672))):
        missing.append(f"RabbitMQ at {host}:{port or 5672}")
    if not reachable((pg.host or "127.0.0.1", pg.port or 5432)):
        missing.append(f"PostgreSQL at {pg.host}:{pg.port or 5432}")
    return ", ".join(missing)


def read_rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB, from /proc (psutil is not a dependency)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return 0
    return 0


@dataclass
class EngineProcess:
    """`python -m engine.cli run` in its own process, logs to files in the stack's folder."""

    routes: Path
    roles: tuple[str, ...] = ()
    log_dir: Path = field(default_factory=Path.cwd)
    partitions: str = ""  # `--partitions` of a deliver process, e.g. "0-1"; "" = all
    shard: str = ""  # `--shard` of a transform process, e.g. "0/2"; "" = all
    proc: subprocess.Popen[bytes] | None = None
    started_wall: float = 0.0

    def argv(self) -> list[str]:
        """The command line, as an operator would type it."""
        argv = [sys.executable, "-m", "engine.cli", "--lang", "en", "run", "--config", str(self.routes)]
        for role in self.roles:
            argv += ["--role", role]
        if self.partitions:
            argv += ["--partitions", self.partitions]
        if self.shard:
            argv += ["--shard", self.shard]
        return argv

    def start(self, timeout: float = 90.0) -> EngineProcess:
        tag = "-".join(self.roles) or "all"
        tag += f"-p{self.partitions}" if self.partitions else ""
        tag += f"-s{self.shard.replace('/', 'of')}" if self.shard else ""
        self.stdout_path = self.log_dir / f"engine-{tag}-{uuid.uuid4().hex[:6]}.out"
        self.stderr_path = self.stdout_path.with_suffix(".err")
        argv = self.argv()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.started_wall = time.time()
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if b"engine running" in self.stdout_path.read_bytes():
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.stderr_path.read_bytes()[-2000:].decode("utf-8", "replace")
        self.stop()
        raise RuntimeError(f"the engine did not start ({' '.join(argv)}):\n{tail}")

    def describe(self) -> str:
        """`ingest`, `transform 0/2`, `deliver 2-3`, `all roles`: how the page names it."""
        name = "+".join(self.roles) or "all roles"
        detail = self.partitions or self.shard
        return f"{name} {detail}" if detail else name

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def rss_kib(self) -> int:
        return read_rss_kib(self.pid) if self.proc is not None else 0

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM (the engine's bounded stop), then SIGKILL after `grace` seconds."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        code = self.proc.returncode
        self.proc = None
        return code

    def kill(self) -> None:
        """Stop at once: the point is over and its stores are thrown away."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class Stack:
    """Fresh stores for one measurement on one backend; `close` removes them."""

    def __init__(self, backend: str, root: Path, partitions: int | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}")
        self.backend = backend
        default = 1 if backend == "embedded" else PARTITIONS
        self.partitions = partitions if partitions is not None else default
        self.dir = Path(tempfile.mkdtemp(prefix=f"{backend}-", dir=root))
        self.queue_prefix = f"bench{uuid.uuid4().hex[:10]}"
        self.schema: str | None = None
        self.engines: list[EngineProcess] = []
        self._sql: Engine | None = None
        self.port = free_port()
        self.gbk_port = free_port()
        if backend == "embedded":
            self.database = f"sqlite:///{self.dir / 'engine.db'}"
            self.broker = "memory://"
        else:
            self.schema = f"bench_{uuid.uuid4().hex[:12]}"
            admin = create_engine(PG_URL)
            with admin.begin() as conn:
                conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
            admin.dispose()
            sep = "&" if "?" in PG_URL else "?"
            self.database = f"{PG_URL}{sep}options=-csearch_path%3D{self.schema}"
            self.broker = AMQP_URL

    def routes(self) -> Path:
        """The repository's routes.yaml with this stack's addresses, beside a link to the
        repository's mappings/, so every path routes.yaml names (mappings, rule tables, the
        education catalogue) is read as shipped."""
        path = self.dir / "routes.yaml"
        if path.exists():
            return path
        (self.dir / "mappings").symlink_to(REPO / "mappings", target_is_directory=True)
        shipped = yaml.safe_load((REPO / "routes.yaml").read_text(encoding="utf-8"))
        doc: dict[str, Any] = {
            "version": 1,
            "engine": {
                "broker": self.broker,
                "database": self.database,
                "timezone": shipped.get("engine", {}).get("timezone", "Asia/Shanghai"),
                "queue_prefix": self.queue_prefix,
                "allowed_paths": [str(REPO / "mappings")],
            },
            "channels": {},
            "routes": [],
            "destinations": {},
        }
        for name, ch in shipped["channels"].items():
            if "listen" not in ch:  # a channel that listens on nothing (db_poll) is kept as shipped
                doc["channels"][name] = ch
                continue
            port = self.port if name == "hospital" else self.gbk_port if name == "lis_gbk" else free_port()
            doc["channels"][name] = {**ch, "listen": f"127.0.0.1:{port}"}
        doc["routes"] = shipped["routes"]
        for name, dest in shipped["destinations"].items():
            doc["destinations"][name] = dict(dest)
            if dest.get("type") == "record_store":  # the store in this stack's database
                doc["destinations"][name]["database"] = self.database
            if self.partitions > 1:
                doc["destinations"][name]["partitions"] = self.partitions
        path.write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return path

    def engine(self, roles: tuple[str, ...] = (), partitions: str = "", shard: str = "") -> EngineProcess:
        """Start an engine process on this stack and wait until it runs (and listens, with ingest)."""
        proc = EngineProcess(self.routes(), roles, self.dir, partitions, shard)
        self.engines.append(proc)
        return proc.start()

    @property
    def sql(self) -> Engine:
        if self._sql is None:
            from core.database import make_engine

            self._sql = make_engine(self.database)
        return self._sql

    # -- what the journal and the store say ------------------------------------------------

    def progress(self) -> dict[str, int]:
        """Journal statuses plus `undelivered` (deliveries not yet delivered) and `delivered`."""
        from core.journal.schema import deliveries, messages

        with self.sql.connect() as conn:
            out = {
                s: n
                for s, n in conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status))
            }
            for status, n in conn.execute(
                select(deliveries.c.status, func.count()).group_by(deliveries.c.status)
            ):
                key = "delivered" if status == "delivered" else "undelivered"
                out[key] = out.get(key, 0) + n
        return out

    def settled(self, expected: int) -> tuple[bool, dict[str, int]]:
        """Whether `expected` journaled messages are all processed and every delivery is done."""
        p = self.progress()
        journaled = sum(
            n for s, n in p.items() if s in {"received", "routed", "unrouted", "failed", "rejected"}
        )
        done = journaled >= expected and not p.get("received") and not p.get("undelivered")
        return done, p

    def wait_settled(self, expected: int, timeout: float, poll: float = 0.25) -> tuple[bool, dict[str, int]]:
        deadline = time.monotonic() + timeout
        done, p = self.settled(expected)
        while not done and time.monotonic() < deadline:
            time.sleep(poll)
            done, p = self.settled(expected)
        return done, p

    def stored_times(self) -> dict[str, float]:
        """control id → the store's own `stored_at` (epoch seconds), records and persons."""
        from channels.record_store.schema import persons, records

        out: dict[str, float] = {}
        with self.sql.connect() as conn:
            for table in (persons, records):
                for control, stored in conn.execute(select(table.c.source_control_id, table.c.stored_at)):
                    if control and stored is not None:
                        out[control] = max(out.get(control, 0.0), stored.timestamp())
        return out

    def journal_times(self) -> dict[str, tuple[float, float | None]]:
        """control id → (journal received_at, delivered at per journal_deliveries), epoch seconds."""
        from core.journal.schema import deliveries, messages

        out: dict[str, tuple[float, float | None]] = {}
        query = select(messages.c.control_id, messages.c.received_at, func.max(deliveries.c.updated_at)).join(
            deliveries, deliveries.c.journal_id == messages.c.id, isouter=True
        )
        query = query.where((deliveries.c.status == "delivered") | deliveries.c.status.is_(None)).group_by(
            messages.c.id
        )
        with self.sql.connect() as conn:
            for control, received, delivered in conn.execute(query):
                if control:
                    out[control] = (received.timestamp(), delivered.timestamp() if delivered else None)
        return out

    # -- cleaning up ------------------------------------------------------------------------

    def close(self) -> None:
        for proc in self.engines:
            proc.kill()
        if self._sql is not None:
            self._sql.dispose()
        if self.schema:
            admin = create_engine(PG_URL)
            with admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
            admin.dispose()
        if self.backend != "embedded":
            delete_queues(self.queue_prefix, self.partitions)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def queue_names(prefix: str, partitions: int) -> list[str]:
    """The record store's queues (one per partition) and their retry queues."""
    lanes = ["record_store"] if partitions <= 1 else [f"record_store.p{n}" for n in range(partitions)]
    retries = [f"{lane}.retry.{s}s" for lane in lanes for s in (10, 60, 600, 3600)]
    return [f"{prefix}.{name}" for name in lanes + retries]


def delete_queues(prefix: str, partitions: int = 1) -> None:
    """Remove what an engine with this queue prefix declared on RabbitMQ."""
    from kombu import Connection

    names = queue_names(prefix, partitions)
    try:
        with Connection(AMQP_URL, connect_timeout=5) as conn:
            channel = conn.default_channel
            for name in names:
                channel.queue_delete(name)
            for exchange in (f"{prefix}.records", f"{prefix}.retry"):
                channel.exchange_delete(exchange)
    except Exception as exc:  # never fail a report over cleaning
        print(f"warning: could not delete RabbitMQ queues {prefix}.*: {exc}", file=sys.stderr)
