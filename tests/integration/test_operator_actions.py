"""On-call actions carried out by the running engine, on the embedded default (SQLite +
memory://) and on RabbitMQ + PostgreSQL: `deadletter replay|reprocess` and `reprocess` by
selection, run as the on-call runs them (the CLI as a subprocess, the engine running).

The engine here runs in the test process (support.RunningEngine); the CLI reaches it only
through the database, as it does a separate `mch-engine run`.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from channels.record_store import store as record_store
from support import (
    AMQP_URL,
    REPO,
    RunningEngine,
    hl7,
    pg_schema,
    require_service,
    scalar,
    wait_until,
    write_routes,
)

EMBEDDED, SERVICES = "sqlite+memory", "postgresql+rabbitmq"
RETRY = "retry:\n  tiers: [1s]\n  max_attempts: 2\n"
LAB_MAPPING = REPO / "mappings/lis/oru_r01.yaml"
PERSON_MAPPING = REPO / "mappings/his/adt_person.yaml"


@dataclass
class Backend:
    kind: str
    url: str
    broker: str

    def routes(self, directory: Path, extra: str = RETRY) -> Path:
        return write_routes(directory, database=self.url, broker=self.broker, extra=extra)


@pytest.fixture(params=[EMBEDDED, SERVICES])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == EMBEDDED:
        yield Backend(EMBEDDED, f"sqlite:///{tmp_path / 'engine.db'}", "memory://")
        return
    require_service("127.0.0.1", 5672, "RabbitMQ")
    with pg_schema() as url:
        yield Backend(SERVICES, url, AMQP_URL)


def mch(config: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`mch-engine --lang en ARGS --config CONFIG` as a separate process."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env["PYTHONPATH"] = str(REPO)
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--lang", "en", *args, "--config", str(config)],
        cwd=config.parent,
        env=env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
    )


def execute(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))


@contextmanager
def refusing_store(store: Engine, kind: str) -> Iterator[None]:
    """The record store refuses every lab result (a trigger: a transient failure, retried, then
    dead-lettered) until the block ends."""
    record_store.ensure_schema(store)
    if kind == EMBEDDED:
        execute(
            store,
            "CREATE TRIGGER refuse BEFORE INSERT ON records "
            "BEGIN SELECT RAISE(ABORT, 'test: the store refuses'); END",
        )
        drop = ["DROP TRIGGER refuse"]
    else:
        execute(
            store,
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'test: the store refuses' USING ERRCODE = '40001'; END $$",
            "CREATE TRIGGER refuse BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION refuse()",
        )
        drop = ["DROP TRIGGER refuse ON records", "DROP FUNCTION refuse()"]
    try:
        yield
    finally:
        execute(store, *drop)


def lab(control_id: str, filler: str, *, reported: str = "20240321113000", hgb: str = "118") -> bytes:
    return hl7(
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|{reported}||ORU^R01|{control_id}|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
        "PID|1||0010088001^^^HIS^PI||王小红||19940315|F",
        f"OBR|1|JC1|{filler}|BLD01^血常规^L|||20240321083000||||||||BLD^全血|||||||{reported}||HEM|F",
        f"OBX|1|NM|HGB^血红蛋白^L||{hgb}|g/L|115-150|N|||F|||20240321112000",
    )


def adt(control_id: str, his_id: str, extra_ids: str = "") -> bytes:
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083200||ADT^A04^ADT_A01|{control_id}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A04|20240321083200",
        f"PID|1||{his_id}^^^HIS^PI{extra_ids}||王小红^^^^^^L||19940315|F",
    )


def dead_letters(config: Path, *args: str) -> list[dict[str, Any]]:
    done = mch(config, "deadletter", "list", "--json", *args)
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def shown(config: Path, dl_id: int) -> dict[str, Any]:
    done = mch(config, "deadletter", "show", str(dl_id), "--json")
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout))


def audit_log(config: Path) -> list[dict[str, Any]]:
    done = mch(config, "deadletter", "audit", "--json")
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_replay_waits_for_the_real_outcome_and_numbers_attempts_once(
    backend: Backend, tmp_path: Path
) -> None:
    """Store refuses → dead letter; replay --wait while it still refuses exits 1 (failed again, open
    again); once it accepts, replay --wait exits 0 with the record stored; attempts 1, 2, 3 … in order."""
    config = backend.routes(tmp_path)
    with RunningEngine(config) as engine:
        store = engine.store()
        with refusing_store(store, backend.kind):
            engine.send([lab("RP-1", "F-RP-1")])
            [dl] = wait_until(lambda: dead_letters(config), 30)
            assert (dl["stage"], dl["destination"]) == ("deliver", "record_store")

            again = mch(config, "deadletter", "replay", str(dl["id"]), "--wait", "30", "--as", "王芳")
            assert again.returncode == 1, again.stdout + again.stderr
            assert "failed again" in again.stdout and "the store refuses" in again.stdout
            assert [d["status"] for d in dead_letters(config)] == ["open"]

        done = mch(config, "deadletter", "replay", str(dl["id"]), "--wait", "30", "--as", "王芳")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "delivered to record_store" in done.stdout and "1 delivered" in done.stdout
        assert scalar(store, "select count(*) from records where record_id = 'lab:LIS:10:F-RP-1'") == 1
        assert dead_letters(config) == []

        tries = shown(config, dl["id"])["attempt_log"]
        numbers = [t["attempt"] for t in tries]
        assert numbers == list(range(1, len(numbers) + 1)), tries
        assert [t["outcome"] for t in tries] == [
            "retry", "dead_letter", "replayed", "retry", "dead_letter", "replayed",
        ]  # fmt: skip

        replays = [a for a in audit_log(config) if a["action"] == "replay"]
        me = getpass.getuser()
        # Newest first: what --wait saw, not that the record was sent (the first one failed again).
        assert [(a["actor"], a["os_user"], a["outcome"]) for a in replays] == [
            ("王芳", me, "done"),
            ("王芳", me, "failed"),
        ]
        assert (replays[0]["detail"]["delivered"], replays[1]["detail"]["failed"]) == ([dl["id"]], [dl["id"]])
        assert f"[some failed: {dl['id']}]" in mch(config, "deadletter", "audit").stdout

        # Nothing left to do: answered at once, audited, nothing queued.
        repeat = mch(config, "deadletter", "replay", str(dl["id"]))
        assert repeat.returncode == 0 and "already replayed: nothing to do" in repeat.stdout


def test_replay_without_wait_says_queued_not_done(backend: Backend, tmp_path: Path) -> None:
    """Without --wait the line says queued (已排队), never that the record was replayed or delivered."""
    config = backend.routes(tmp_path)
    with RunningEngine(config) as engine:
        with refusing_store(engine.store(), backend.kind):
            engine.send([lab("RQ-1", "F-RQ-1")])
            [dl] = wait_until(lambda: dead_letters(config), 30)
        done = mch(config, "deadletter", "replay", str(dl["id"]))
        assert done.returncode == 0, done.stdout + done.stderr
        assert "queued for delivery to record_store" in done.stdout and "1 queued" in done.stdout
        assert "delivered" not in done.stdout
        entry = next(a for a in audit_log(config) if a["action"] == "replay")
        assert entry["outcome"] == "queued"  # sent for delivery; nobody waited to see it delivered
        assert "sent for delivery; its outcome was not awaited" in mch(config, "deadletter", "audit").stdout
        zh = subprocess.run(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "deadletter",
                "replay",
                str(dl["id"]),
                "--config",
                str(config),
            ],
            cwd=tmp_path,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("MCH_")},
                "PYTHONPATH": str(REPO),
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert "已是 replayed 状态" in zh.stdout, zh.stdout + zh.stderr
        wait_until(lambda: scalar(engine.store(), "select count(*) from records") == 1, 30)


def test_with_no_engine_running_the_request_waits_and_says_so(backend: Backend, tmp_path: Path) -> None:
    """No engine: exit 3 and "is the engine running?"; the engine started later carries it out."""
    config = backend.routes(tmp_path)
    with RunningEngine(config) as engine, refusing_store(engine.store(), backend.kind):
        engine.send([lab("RN-1", "F-RN-1")])
        [dl] = wait_until(lambda: dead_letters(config), 30)
    queued = mch(config, "deadletter", "replay", str(dl["id"]), "--as", "夜班")
    assert queued.returncode == 3, queued.stdout + queued.stderr
    assert "Is the engine running?" in queued.stdout and "mch-engine run" in queued.stdout
    assert [d["status"] for d in dead_letters(config)] == ["open"]
    entry = next(a for a in audit_log(config) if a["action"] == "replay")
    assert (entry["actor"], entry["outcome"]) == ("夜班", "started")
    assert "queued: waiting for the engine" in mch(config, "deadletter", "audit").stdout

    with RunningEngine(config) as engine:
        wait_until(lambda: scalar(engine.store(), "select count(*) from records") == 1, 30)
        assert dead_letters(config) == []
        entry = next(a for a in audit_log(config) if a["action"] == "replay")
        assert (entry["actor"], entry["outcome"], entry["count"]) == ("夜班", "queued", 1)


def test_transform_dead_letter_fixed_mapping_reprocessed(backend: Backend, tmp_path: Path) -> None:
    """Mapping requires a field the message lacks → transform dead letter; replay says use reprocess;
    the mapping file is fixed and the engine restarted; reprocess --wait → the Person is stored."""
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings)
    person = mappings / "his" / "adt_person.yaml"
    shipped = person.read_text(encoding="utf-8")
    optional = "        mch_handbook_no: PID-3[*].1 where PID-3[*].5 == MCH\n"
    required = '        mch_handbook_no: {path: "PID-3[*].1 where PID-3[*].5 == MCH", required: true}\n'
    assert optional in shipped
    person.write_text(shipped.replace(optional, required), encoding="utf-8")
    config = backend.routes(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8").replace(str(PERSON_MAPPING), str(person)), encoding="utf-8"
    )

    with RunningEngine(config) as engine:
        engine.send([adt("TF-1", "TF0001")])
        [dl] = wait_until(lambda: dead_letters(config), 30)
        assert dl["stage"] == "transform"
        replay = mch(config, "deadletter", "replay", str(dl["id"]))
        assert replay.returncode == 0, replay.stdout + replay.stderr
        assert "use reprocess" in replay.stdout and "bus" not in replay.stdout.lower()
        still = mch(config, "deadletter", "reprocess", str(dl["id"]), "--wait", "20")
        assert still.returncode == 1 and "still fails" in still.stdout, still.stdout + still.stderr

    person.write_text(shipped, encoding="utf-8")  # the fix, then a restart loads it
    with RunningEngine(config) as engine:
        done = mch(config, "deadletter", "reprocess", str(dl["id"]), "--wait", "30", "--as", "王芳")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "delivered to record_store" in done.stdout
        assert scalar(engine.store(), "select count(*) from persons where source_control_id = 'TF-1'") == 1
        assert dead_letters(config) == []
        actions = [(a["action"], a["actor"], a["outcome"]) for a in audit_log(config)]
        assert actions[0] == ("reprocess", "王芳", "done")


def test_reprocess_by_selection_dry_run_then_correct_never_over_a_newer_event(
    backend: Backend, tmp_path: Path
) -> None:
    """Lab results stored with a wrong mapping (placer order id read from OBR-4) are corrected by
    `mch-engine reprocess --route lab-results`; the dry run shows the field difference and writes
    nothing; a record the store holds from a newer message is left as it is."""
    mappings = tmp_path / "mappings"
    shutil.copytree(REPO / "mappings", mappings)
    lab_mapping = mappings / "lis" / "oru_r01.yaml"
    shipped = lab_mapping.read_text(encoding="utf-8")
    right, wrong = "      placer_order_id: OBR-2.1\n", "      placer_order_id: OBR-4.1\n"
    assert right in shipped
    lab_mapping.write_text(shipped.replace(right, wrong), encoding="utf-8")
    config = backend.routes(tmp_path)
    config.write_text(
        config.read_text(encoding="utf-8").replace(str(LAB_MAPPING), str(lab_mapping)), encoding="utf-8"
    )
    tag = uuid.uuid4().hex[:6]

    def payload(store: Engine, record_id: str) -> tuple[dict[str, Any], int]:
        with store.connect() as conn:
            row = conn.execute(
                text("select payload, journal_id from records where record_id = :r"), {"r": record_id}
            ).one()
        value = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
        return value, int(row.journal_id)

    wrong_one, corrected_later = f"lab:LIS:10:W{tag}", f"lab:LIS:10:N{tag}"
    with RunningEngine(config) as engine:
        engine.send([lab("SEL-1", f"W{tag}"), lab("SEL-2", f"N{tag}"), adt("SEL-3", "SEL0003")])
        wait_until(lambda: scalar(engine.store(), "select count(*) from records") == 2, 30)
    lab_mapping.write_text(shipped, encoding="utf-8")  # the fix, then a restart loads it

    with RunningEngine(config) as engine:
        store = engine.store()
        # A newer report for the second one arrives after the fix: the store keeps it.
        engine.send([lab("SEL-4", f"N{tag}", reported="20240322090000", hgb="121")])
        wait_until(lambda: payload(store, corrected_later)[0]["observations"][0]["value"] == 121, 30)
        before = {rid: payload(store, rid) for rid in (wrong_one, corrected_later)}
        assert before[wrong_one][0]["placer_order_id"] == "BLD01"

        dry = mch(config, "reprocess", "--route", "lab-results", "--type", "LabResult", "--dry-run")
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "1 changed" in dry.stdout and "1 kept (the store has a newer event)" in dry.stdout
        assert 'placer_order_id: "BLD01" → "JC1"' in dry.stdout
        assert "nothing was written" in dry.stdout
        assert {rid: payload(store, rid) for rid in before} == before

        unknown = mch(config, "reprocess", "--route", "lab-result", "--dry-run")
        assert unknown.returncode == 2 and "lab-results" in unknown.stderr
        unreadable = mch(config, "reprocess", "--until", "last week", "--dry-run")
        assert unreadable.returncode == 2 and "--until not understood" in unreadable.stderr
        before_all = mch(config, "reprocess", "--until", "2000-01-01", "--dry-run")
        assert before_all.returncode == 0 and ": 0 messages" in before_all.stdout, before_all.stdout

        done = mch(config, "reprocess", "--route", "lab-results", "--wait", "30", "--as", "王芳")
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 records queued" in done.stdout and "1 delivered" in done.stdout
        fixed, jid = payload(store, wrong_one)
        assert fixed["placer_order_id"] == "JC1" and jid == before[wrong_one][1]
        assert payload(store, corrected_later) == before[corrected_later]  # the newer event stays

        log = audit_log(config)
        assert [(a["action"], a["actor"], a["outcome"]) for a in log[:2]] == [
            ("reprocess", "王芳", "done"),
            ("reprocess_preview", getpass.getuser(), "done"),
        ]
        assert log[0]["count"] == 1
