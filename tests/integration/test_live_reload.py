"""`mch-engine reload`, SIGHUP and `check --diff` against a running engine.

The engine runs with a copy of the shipped mappings in the test's directory, so a test
can edit a mapping, a code table or routes.yaml the way an interface engineer does, and
then run the real `mch-engine` commands as processes.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from faults.engine_process import EngineProcess, delete_broker_objects, engine_env, mch
from sqlalchemy import text

from core.database import make_engine
from support import (
    AMQP_URL,
    REPO,
    RunningEngine,
    free_port,
    hl7,
    msa,
    oru,
    pg_schema,
    require_service,
    scalar,
    shipped_routes_copy,
    wait_until,
    write_routes,
)
from support import adt as support_adt

PINYIN = '      name_pinyin: "{PID-5[2].1} {PID-5[2].2}"\n'
PINYIN_REVERSED = '      name_pinyin: "{PID-5[2].2} {PID-5[2].1}"\n'
PERSON_MAPPING = "mappings/his/adt_person.yaml"
ROLES_FRONT = ("--role", "ingest", "--role", "transform")


def adt(control_id: str, his_id: str) -> bytes:
    """A registration whose PID-5 has the pinyin in a second repetition (`name_pinyin`)."""
    return support_adt(control_id, his_id, name="陈静^^^^^^L~CHEN^JING")


def routes_yaml(directory: Path, **options: Any) -> Path:
    """`write_routes` on the test's own copy of the shipped mappings (made once)."""
    if not (directory / "mappings").exists():
        shutil.copytree(REPO / "mappings", directory / "mappings")
    options.setdefault("channels", {"hospital": {}})
    return write_routes(directory, mappings=directory / "mappings", **options)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


class Sender:
    """One MLLP connection kept open across reloads: a frame out, its ACK back."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send(self, payload: bytes) -> bytes:
        self.sock.sendall(b"\x0b" + payload + b"\x1c\r")
        data = b""
        while not data.endswith(b"\x1c\r"):
            chunk = self.sock.recv(65536)
            assert chunk, "the engine closed the connection"
            data += chunk
        return data[1:-2]

    def close(self) -> None:
        self.sock.close()


def pinyin(store: object, his_id: str) -> str | None:
    payload = scalar(store, "select payload from persons where person_key = :k", k=f"his:HIS:{his_id}")
    if payload is None:
        return None
    record = json.loads(payload) if isinstance(payload, str) else payload
    return str(record["name_pinyin"])


def reload_logs(path: Path) -> list[dict[str, Any]]:
    """The engine's `reload_finished` log lines, oldest first."""
    lines = [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.startswith("{")
    ]
    return [line for line in lines if line.get("event") == "reload_finished"]


def engine_send(port: int, payload: bytes) -> bytes:
    sender = Sender(port)
    try:
        return sender.send(payload)
    finally:
        sender.close()


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return True
    return False


@pytest.fixture(params=["embedded", "rabbitmq+postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "embedded":
        yield {"database": f"sqlite:///{tmp_path}/engine.db"}
        return
    require_service("127.0.0.1", 5672, "RabbitMQ")
    prefix = f"r{uuid.uuid4().hex[:10]}"
    with pg_schema() as url:
        try:
            yield {"database": url, "broker": AMQP_URL, "queue_prefix": prefix}
        finally:
            delete_broker_objects(prefix, ["record_store"])


# --------------------------------------------------------------------------- reload


def test_an_edited_mapping_is_used_after_reload_and_an_open_connection_stays(
    backend: dict[str, str], tmp_path: Path
) -> None:
    routes = routes_yaml(tmp_path, **backend)
    with RunningEngine(routes) as engine:
        sender = Sender(engine.port())
        try:
            assert msa(sender.send(adt("R-1", "0010000001")))[0] == "AA"
            wait_until(lambda: pinyin(engine.store(), "0010000001") == "CHEN JING")

            edit(tmp_path / PERSON_MAPPING, PINYIN, PINYIN_REVERSED)
            plan = mch(routes, "check", "--diff")
            assert plan.returncode == 0, plan.stderr
            assert "compared with what the running engine" in plan.stdout
            assert f"file changed: {PERSON_MAPPING}" in plan.stdout

            done = mch(routes, "reload", "--as", "王芳")
            assert done.returncode == 0, done.stdout + done.stderr
            assert "reloaded" in done.stdout and f"file changed: {PERSON_MAPPING}" in done.stdout

            # The connection opened before the reload is still the same one and still answered.
            assert msa(sender.send(adt("R-2", "0010000002")))[0] == "AA"
            wait_until(lambda: pinyin(engine.store(), "0010000002") == "JING CHEN")
            assert pinyin(engine.store(), "0010000001") == "CHEN JING"  # stored before: unchanged
        finally:
            sender.close()
        entry = scalar(
            engine.journal,
            "select actor || '|' || os_user || '|' || outcome from audit_log where action = 'reload'",
        )
        assert entry == f"王芳|{getpass.getuser()}|done"
        again = mch(routes, "reload")
        assert again.returncode == 0 and "nothing changed" in again.stdout


def test_under_load_each_message_is_transformed_wholly_with_one_configuration(tmp_path: Path) -> None:
    """Two routes take every ORU^R01, each with its own mapping file; both files change
    together between reloads while messages stream in. Every message's two records agree
    (never one route's old mapping beside the other's new one), and none is lost."""
    channels = {"hospital": {"port": free_port()}}
    routes = routes_yaml(tmp_path, database=f"sqlite:///{tmp_path}/engine.db", channels=channels)
    first, second = tmp_path / "mappings/lis/oru_r01.yaml", tmp_path / "mappings/lis/oru_r01_copy.yaml"
    second.write_text(first.read_text(encoding="utf-8").replace('"lab:{', '"copy:{'), encoding="utf-8")
    route = f"  - name: lab-copy\n    from: [hospital]\n    message_type: ORU^R01\n    mapping: {second}\n"
    edit(routes, "destinations:\n", route + "    to: [record_store]\ndestinations:\n")
    old, new = "PID-3[*].1 where PID-3[*].5 == MCH", "PID-3[*].1 where PID-3[*].5 == PI"
    count = 150
    with RunningEngine(routes) as engine:
        acks: list[str] = []

        def stream() -> None:
            sender = Sender(engine.port())
            try:
                for i in range(count):
                    acks.append(msa(sender.send(oru(f"L-{i}", f"F{i:04d}", "0010000061")))[0])
            finally:
                sender.close()

        streaming = threading.Thread(target=stream)
        streaming.start()
        flips = 0
        while streaming.is_alive() and flips < 8:
            wait_until(lambda n=flips: len(acks) > (n + 1) * count // 10, timeout=30)
            for path in (first, second):
                edit(path, *(old, new) if flips % 2 == 0 else (new, old))
            assert engine.runtime.reloader.reload().result == "reloaded"  # type: ignore[union-attr]
            flips += 1
        streaming.join(60)
        assert acks == ["AA"] * count and flips >= 2
        query = "select count(*) from records where record_type = 'LabResult'"
        wait_until(lambda: scalar(engine.store(), query) == 2 * count)
        with engine.store().connect() as conn:
            rows = conn.execute(text("select record_id, payload from records")).all()
    handbook = {}
    for record_id, payload in rows:
        record = json.loads(payload) if isinstance(payload, str) else payload
        handbook[record_id] = record["person"].get("mch_handbook_no")
    variants = set()
    for i in range(count):
        pair = (handbook[f"lab:LIS:10:F{i:04d}"], handbook[f"copy:LIS:10:F{i:04d}"])
        assert pair[0] == pair[1], f"message {i} was mapped half old, half new: {pair}"
        variants.add(pair[0])
    assert variants == {None, "0010000061"}  # both configurations were in use


def test_a_broken_mapping_changes_nothing_and_says_where(tmp_path: Path) -> None:
    routes = routes_yaml(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    with RunningEngine(routes) as engine:
        mapping = tmp_path / PERSON_MAPPING
        edit(mapping, PINYIN, PINYIN_REVERSED)
        edit(mapping, "convert: sex}", "convert: sexx}")
        line = next(i for i, text in enumerate(mapping.read_text().splitlines(), 1) if "sexx" in text)

        refused = mch(routes, "reload")
        assert refused.returncode == 1
        assert f"{PERSON_MAPPING}:{line}:" in refused.stderr and "no engine was asked" in refused.stderr

        # The engine checks for itself too (a SIGHUP, another operator's files): refused, kept.
        outcome = engine.runtime.reloader.reload()  # type: ignore[union-attr]
        assert outcome.result == "refused"
        assert any(f"{PERSON_MAPPING}:{line}:" in text for text in outcome.reasons[0]["lines"])

        assert msa(engine.send([adt("B-1", "0010000003")])[0])[0] == "AA"
        wait_until(lambda: pinyin(engine.store(), "0010000003") == "CHEN JING")  # the old mapping


def test_a_changed_listen_port_moves_the_listener_and_other_channels_keep_their_connections(
    tmp_path: Path,
) -> None:
    ports = {name: free_port() for name in ("hospital", "lis", "moved", "pacs")}
    channels: dict[str, dict[str, Any]] = {
        "hospital": {"port": ports["hospital"]},
        "lis": {"port": ports["lis"], "encoding": "gb18030"},
    }
    database = f"sqlite:///{tmp_path}/engine.db"
    routes = routes_yaml(tmp_path, database=database, channels=channels)
    with RunningEngine(routes) as engine:
        kept = Sender(ports["hospital"])
        try:
            assert msa(kept.send(adt("P-1", "0010000011")))[0] == "AA"
            # hospital: same address, new settings; lis moves; pacs is new.
            channels = {
                "hospital": {"port": ports["hospital"], "idle_timeout": "20m", "ack": "{mode: enhanced}"},
                "lis": {"port": ports["moved"], "encoding": "gb18030"},
                "pacs": {"port": ports["pacs"]},
            }
            routes_yaml(
                tmp_path,
                database=database,
                channels=channels,
                queue_prefix=engine.settings.engine.queue_prefix,
            )
            done = mch(routes, "reload")
            assert done.returncode == 0, done.stdout + done.stderr
            assert (
                f"channel lis moves from 127.0.0.1:{ports['lis']} to 127.0.0.1:{ports['moved']}"
                in done.stdout
            )
            assert "channel added: pacs" in done.stdout
            assert "channel changed: hospital (ack.mode, idle_timeout)" in done.stdout

            # The open connection keeps going, now answered in enhanced mode (CA).
            assert msa(kept.send(adt("P-2", "0010000012")))[0] == "CA"
        finally:
            kept.close()
        assert refuses_connections(ports["lis"])
        assert sorted(engine.runtime.ports().items()) == sorted(
            {"hospital": ports["hospital"], "lis": ports["moved"], "pacs": ports["pacs"]}.items()
        )
        assert msa(engine.send([adt("P-3", "0010000013")], channel="lis")[0])[0] == "AA"
        assert msa(engine.send([adt("P-4", "0010000014")], channel="pacs")[0])[0] == "AA"
        wait_until(lambda: pinyin(engine.store(), "0010000014") == "CHEN JING")

        # A channel removed stops listening.
        del channels["pacs"]
        routes_yaml(
            tmp_path, database=database, channels=channels, queue_prefix=engine.settings.engine.queue_prefix
        )
        removed = mch(routes, "reload")
        assert removed.returncode == 0 and "channel removed: pacs" in removed.stdout
        assert refuses_connections(ports["pacs"])


def test_settings_only_a_restart_applies_refuse_the_reload(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/engine.db"
    routes = routes_yaml(tmp_path, database=database)
    with RunningEngine(routes) as engine:
        prefix = engine.settings.engine.queue_prefix
        edit(routes, f"queue_prefix: {prefix}", "queue_prefix: other")
        refused = mch(routes, "reload")
        assert refused.returncode == 1
        assert "reload refused, the engine keeps its configuration" in refused.stdout
        assert (
            "restart needed: these settings apply only after a restart: engine.queue_prefix" in refused.stdout
        )

        # engine.database: the CLI would look for engines in the new database, where none runs;
        # the engine itself (here, as on SIGHUP) refuses.
        edit(routes, "queue_prefix: other", f"queue_prefix: {prefix}")
        edit(routes, database, f"sqlite:///{tmp_path}/other.db")
        outcome = engine.runtime.reloader.reload()  # type: ignore[union-attr]
        assert outcome.result == "refused"
        assert outcome.reasons[0]["code"] == "restart_needed"
        assert "engine.database" in outcome.reasons[0]["keys"]
        nobody = mch(routes, "reload", "--timeout", "2")
        assert nobody.returncode == 2
        assert "no engine answered within 2 s" in nobody.stderr and "other.db" in nobody.stderr
        assert msa(engine.send([adt("S-1", "0010000021")])[0])[0] == "AA"


def test_a_destination_is_added_live_and_removed_only_when_nothing_waits_for_it(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/engine.db"
    channels = {"hospital": {"port": free_port()}}
    routes = routes_yaml(tmp_path, database=database, channels=channels)
    with RunningEngine(routes) as engine:
        prefix = engine.settings.engine.queue_prefix
        routes_yaml(
            tmp_path,
            database=database,
            channels=channels,
            queue_prefix=prefix,
            destinations=("record_store", "archive"),
            lab_to="archive",
        )
        added = mch(routes, "reload")
        assert added.returncode == 0, added.stdout + added.stderr
        assert "destination added: archive" in added.stdout and "channel" not in added.stdout
        assert "route changed: lab-results (to)" in added.stdout
        oru = hl7(
            "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|D-1|P|2.4|||AL|NE|CHN",
            "PID|1||0010000031^^^HIS^PI||王小红||19940315|F",
            "OBR|1|JC1|24032100031|BLD01^血常规^L|||20240321083000||||||||BLD^全血|||||||20240321113000||HEM|F",
            "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F|||20240321112000",
        )
        assert msa(engine.send([oru])[0])[0] == "AA"
        delivered = (
            "select count(*) from journal_deliveries where destination = 'archive' and status = 'delivered'"
        )
        wait_until(lambda: scalar(engine.journal, delivered) == 1)

        # A message still waiting for `archive` (as a destination that is down would leave it).
        with engine.journal.begin() as conn:
            conn.execute(
                text(
                    "insert into journal_deliveries (journal_id, destination, record_id, status, attempts,"
                    " updated_at) values (999, 'archive', 'lab:x', 'retrying', 1, '2024-01-01 00:00:00')"
                )
            )
        routes_yaml(tmp_path, database=database, channels=channels, queue_prefix=prefix)
        refused = mch(routes, "reload")
        assert refused.returncode == 1
        assert "destination archive still has 1 undelivered messages" in refused.stdout
        assert any(w.destination == "archive" for w in engine.runtime.workers)

        with engine.journal.begin() as conn:
            conn.execute(text("delete from journal_deliveries where journal_id = 999"))
        removed = mch(routes, "reload")
        assert removed.returncode == 0 and "destination removed: archive" in removed.stdout
        wait_until(lambda: not any(w.destination == "archive" for w in engine.runtime.workers), timeout=15)


def test_every_engine_process_answers_and_one_that_does_not_is_named(tmp_path: Path) -> None:
    """RabbitMQ + PostgreSQL, roles split over two processes: both reload; a process that
    looks alive but never answers makes the command say so and exit 2."""
    require_service("127.0.0.1", 5672, "RabbitMQ")
    prefix = f"r{uuid.uuid4().hex[:10]}"
    channels = {"hospital": {"port": free_port()}}
    with pg_schema() as url:
        routes = routes_yaml(tmp_path, database=url, broker=AMQP_URL, queue_prefix=prefix, channels=channels)
        front = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "run", "--config", str(routes), *ROLES_FRONT],
            cwd=tmp_path,
            env=engine_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert front.stdout is not None
            assert front.stdout.readline().startswith("engine running")
            with RunningEngine(routes, roles=frozenset({"deliver"})) as back:
                edit(tmp_path / PERSON_MAPPING, PINYIN, PINYIN_REVERSED)
                done = mch(routes, "reload")
                assert done.returncode == 0, done.stdout + done.stderr
                assert done.stdout.count(": reloaded") == 2
                assert "2 engine processes answered" in done.stdout
                assert msa(engine_send(channels["hospital"]["port"], adt("M-1", "0010000051")))[0] == "AA"
                wait_until(lambda: pinyin(back.store(), "0010000051") == "JING CHEN")

                with back.journal.begin() as conn:
                    conn.execute(
                        text(
                            "insert into engine_processes (process_id, process, host, pid, roles,"
                            " started_at, heartbeat_at, listeners, counters, loaded_at, snapshot)"
                            " values ('ghost:1:0', 'ghost:1', 'ghost', 1, '[\"deliver\"]', :t, :t,"
                            " '[]', '{}', :t, '{}')"
                        ),
                        {"t": datetime.now(UTC)},
                    )
                partial = mch(routes, "reload", "--timeout", "3")
                assert partial.returncode == 2
                assert "ghost:1: no answer within 3 s" in partial.stderr
                assert partial.stdout.count(": nothing changed, nothing to do") == 2
        finally:
            front.send_signal(signal.SIGTERM)
            front.communicate(timeout=30)
            delete_broker_objects(prefix, ["record_store"])


# --------------------------------------------------------------------------- SIGHUP


def test_sighup_reloads_the_engine_process_and_is_audited(tmp_path: Path) -> None:
    routes = routes_yaml(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    with EngineProcess(routes) as engine:
        sender = Sender(engine.port())
        try:
            assert msa(sender.send(adt("H-1", "0010000041")))[0] == "AA"
            edit(tmp_path / PERSON_MAPPING, PINYIN, PINYIN_REVERSED)
            os.kill(engine.pid, signal.SIGHUP)
            reloaded = wait_until(lambda: reload_logs(tmp_path / "engine.log"), timeout=30)[0]
            assert reloaded["result"] == "reloaded"
            assert reloaded["changed"]["files"]["changed"] == {PERSON_MAPPING: ["content"]}
            assert msa(sender.send(adt("H-2", "0010000042")))[0] == "AA"
        finally:
            sender.close()
        store = make_engine(f"sqlite:///{tmp_path}/engine.db")
        try:
            wait_until(lambda: pinyin(store, "0010000042") == "JING CHEN")
            assert pinyin(store, "0010000041") == "CHEN JING"
        finally:
            store.dispose()
        audit = mch(routes, "deadletter", "audit", "--json")
        entries = [e for e in map(json.loads, audit.stdout.splitlines()) if e["action"] == "reload"]
        assert entries and entries[0]["target"].startswith("SIGHUP") and entries[0]["outcome"] == "done"
        assert entries[0]["os_user"] == getpass.getuser()

        # A change only a restart applies: refused, said in the log, the engine goes on.
        edit(routes, f"sqlite:///{tmp_path}/engine.db", f"sqlite:///{tmp_path}/elsewhere.db")
        os.kill(engine.pid, signal.SIGHUP)
        refused = wait_until(lambda: reload_logs(tmp_path / "engine.log")[1:], timeout=30)[0]
        assert refused["result"] == "refused" and "engine.database" in refused["restart_needed"]
        assert msa(engine_send(engine.port(), adt("H-3", "0010000043")))[0] == "AA"
        assert engine.stop() == 0


# --------------------------------------------------------------------------- check --diff


def test_check_diff_names_what_a_reload_would_change(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path}/engine.db"
    channels: dict[str, dict[str, Any]] = {"hospital": {"port": free_port()}}
    routes = routes_yaml(tmp_path, database=database, channels=channels)
    before = mch(routes, "check", "--diff")
    assert before.returncode == 0
    assert "no engine has run with this database yet; everything is new" in before.stdout
    assert "+ route added: persons" in before.stdout and "+ channel added: hospital" in before.stdout

    with RunningEngine(routes) as engine:
        same = mch(routes, "check", "--diff")
        assert "no changes: a reload would change nothing" in same.stdout
        prefix = engine.settings.engine.queue_prefix
        channels = {"hospital": {**channels["hospital"], "encoding": "gb18030"}, "lis": {}}
        routes_yaml(
            tmp_path, database=database, queue_prefix=prefix, channels=channels,
            destinations=("record_store", "archive"), lab_to="archive",
        )  # fmt: skip
        edit(routes, "  - name: persons", "  - name: people")
        with open(tmp_path / "mappings/codes/lis_tests.csv", "a", encoding="utf-8") as table:
            table.write("\n")
        diff = mch(routes, "check", "--diff")
        assert diff.returncode == 0, diff.stderr
        for line in [
            "+ channel added: lis",
            "~ channel changed: hospital (encoding)",
            "+ route added: people",
            "- route removed: persons",
            "~ route changed: lab-results (from, to)",
            "+ destination added: archive",
            "~ file changed: mappings/codes/lis_tests.csv",
        ]:
            assert line in diff.stdout, diff.stdout
    after = mch(routes, "check", "--diff")
    assert "no engine is running; compared with what engine" in after.stdout
    assert "+ destination added: archive" in after.stdout


def test_an_edited_rule_table_is_used_after_reload(tmp_path: Path) -> None:
    """A province's variant of the risk table takes effect on reload, without a restart."""
    routes = shipped_routes_copy(tmp_path)
    samples = tmp_path / "mappings"
    with RunningEngine(routes) as engine:

        def suggested() -> list[tuple[str, str, str]]:
            with engine.store().connect() as conn:
                rows = conn.execute(
                    text(
                        "select payload from records where record_type = 'RiskAssessment' order by record_id"
                    )
                ).all()
            payloads = [r[0] if isinstance(r[0], dict) else json.loads(r[0]) for r in rows]
            return [(p["assessment_date"], p["colour"], p["rule_set"]) for p in payloads]

        registration = samples / "his/samples/002_ORU-R01_utf-8__pregnancy-registration-lmp-edd-gravidity.hl7"
        assert msa(engine_send(engine.port(), registration.read_bytes()))[0] == "AA"
        wait_until(lambda: suggested() == [("2024-03-21", "green", "nhc-2017-35 2017.1")])

        # A stricter local variant: Hb below 120 g/L counts as anaemia (the blood routine has 118).
        table = tmp_path / "mappings/rules/risk_five_colour.yaml"
        edit(table, 'version: "2017.1"', 'version: "2017.1-local"')
        edit(table, "fact: hb, ge: 60, lt: 110", "fact: hb, ge: 60, lt: 120")
        plan = mch(routes, "check", "--diff")
        assert plan.returncode == 0 and "file changed: mappings/rules/risk_five_colour.yaml" in plan.stdout
        done = mch(routes, "reload")
        assert done.returncode == 0 and "reloaded" in done.stdout, done.stdout + done.stderr

        blood = samples / "lis/samples/003_ORU-R01_utf-8__lis-blood-routine.hl7"
        assert msa(engine_send(engine.port(), blood.read_bytes()))[0] == "AA"
        # The whole history is graded again with the new table, the registration day included.
        wait_until(lambda: suggested() == [("2024-03-21", "yellow", "nhc-2017-35 2017.1-local")])
