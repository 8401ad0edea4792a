"""The on-call story of docs/oncall.md, played on the embedded default (SQLite + memory://).

A real `mch-engine run` process, and every step a real `mch-engine` command as the person
on call types it:
- a registration fails in transform because of a mapping bug → `deadletter list` and `show`
  → the mapping is fixed → `check --diff` → `reload` → `deadletter reprocess --wait` → the
  person is stored → `deadletter audit` shows each step with the OS user;
- a lab result fails delivery because the record store refuses it → `deadletter replay
  --wait` fails while the store still refuses → once the store is back `replay --wait` says
  delivered → the result is stored → the audit shows both replays.
"""

from __future__ import annotations

import getpass
import json
import shutil
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from faults.engine_process import EngineProcess, mch
from sqlalchemy import Engine, text

from channels.record_store import store as record_store
from core.database import make_engine
from support import REPO, hl7, msa, wait_until, write_routes

BUG = "birth_date: {path: PID-8, convert: hl7_date}"  # PID-8 is the sex: "F" is no date
FIX = "birth_date: {path: PID-7, convert: hl7_date}"
PERSON_MAPPING = "mappings/his/adt_person.yaml"
HIS_ID = "0010090001"


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A hospital's configuration folder: routes.yaml beside a copy of the shipped mappings,
    with a mapping bug an interface engineer might write."""
    shutil.copytree(REPO / "mappings", tmp_path / "mappings")
    mapping = tmp_path / PERSON_MAPPING
    original = mapping.read_text(encoding="utf-8")
    assert FIX in original
    mapping.write_text(original.replace(FIX, BUG, 1), encoding="utf-8")
    yield write_routes(
        tmp_path,
        database=f"sqlite:///{tmp_path / 'engine.db'}",
        channels={"hospital": {"encoding": "utf-8"}},
        mappings=tmp_path / "mappings",
        extra="retry:\n  tiers: [1s]\n  max_attempts: 2\n",
    )


def run(config: Path, *args: str, expect: int = 0) -> str:
    done = mch(config, *args, timeout=120)
    assert done.returncode == expect, (
        f"mch-engine {' '.join(args)} → {done.returncode}\n{done.stdout}\n{done.stderr}"
    )
    return done.stdout


def json_lines(config: Path, *args: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in run(config, *args, "--json").splitlines() if line.strip()]


def send(port: int, payload: bytes) -> str:
    """One frame over a new connection, as a HIS sends it; the ACK code back."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(b"\x0b" + payload + b"\x1c\r")
        answer = b""
        while not answer.endswith(b"\x1c\r"):
            chunk = sock.recv(65536)
            assert chunk, "the engine closed the connection"
            answer += chunk
    return msa(answer[1:-2])[0]


def registration(control_id: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083200||ADT^A04^ADT_A01|{control_id}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A04|20240321083200",
        f"PID|1||{HIS_ID}^^^HIS^PI||刘晓梅^^^^^^L||19940315|F",
    )


def lab_result(control_id: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113000||ORU^R01|{control_id}|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
        f"PID|1||{HIS_ID}^^^HIS^PI||刘晓梅||19940315|F",
        "OBR|1|JC7|LAB7|BLD01^血常规^L|||20240321083000||||||||BLD^全血|||||||20240321113000||HEM|F",
        "OBX|1|NM|HGB^血红蛋白^L||118|g/L|115-150|N|||F|||20240321112000",
    )


def open_letters(config: Path, stage: str) -> list[dict[str, Any]]:
    return [d for d in json_lines(config, "deadletter", "list") if d["stage"] == stage]


def stored(config: Path, record_type: str) -> list[dict[str, Any]]:
    return json_lines(config, "records", "list", "--type", record_type)


def execute(engine: Engine, sql: str) -> None:
    with engine.begin() as conn:
        conn.execute(text(sql))


def test_a_transform_failure_fixed_reloaded_and_reprocessed_then_a_delivery_failure_replayed(
    site: Path,
) -> None:
    me = getpass.getuser()
    with EngineProcess(site) as engine:
        # 1. A registration fails at the transform stage: the sender still gets AA.
        assert send(engine.port(), registration("HIS-STORY-1")) == "AA"
        wait_until(lambda: len(open_letters(site, "transform")) == 1, timeout=30)
        [letter] = open_letters(site, "transform")
        shown = run(site, "deadletter", "show", str(letter["id"]))
        assert "adt_person.yaml" in shown and "PID-8" in shown
        assert stored(site, "Person") == []

        # 2. The interface engineer fixes the mapping; check --diff names it; reload takes it.
        mapping = site.parent / PERSON_MAPPING
        mapping.write_text(mapping.read_text(encoding="utf-8").replace(BUG, FIX, 1), encoding="utf-8")
        assert f"file changed: {PERSON_MAPPING}" in run(site, "check", "--diff")
        assert "reloaded" in run(site, "reload", "--as", "王芳")

        # 3. Reprocess the dead letter and wait for the outcome: the person is stored.
        run(site, "deadletter", "reprocess", str(letter["id"]), "--wait", "--as", "王芳")
        [person] = stored(site, "Person")
        assert person["record"]["person"]["birth_date"] == "1994-03-15"
        assert open_letters(site, "transform") == []

        # 4. The record store refuses lab results: retried, then a deliver-stage dead letter.
        store = make_engine(f"sqlite:///{site.parent / 'engine.db'}")
        try:
            record_store.ensure_schema(store)
            execute(
                store,
                "CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.record_type = 'LabResult' "
                "BEGIN SELECT RAISE(ABORT, 'test: the store refuses'); END",
            )
            assert send(engine.port(), lab_result("LIS-STORY-1")) == "AA"
            wait_until(lambda: len(open_letters(site, "deliver")) == 1, timeout=60)
            [failed] = open_letters(site, "deliver")

            # 5. Replay while the store still refuses: --wait says it failed again (exit 1).
            run(site, "deadletter", "replay", str(failed["id"]), "--wait", "30", "--as", "王芳", expect=1)
            wait_until(lambda: len(open_letters(site, "deliver")) == 1, timeout=60)

            # 6. The store is back: replay --wait says delivered, and the result is stored.
            execute(store, "DROP TRIGGER refuse")
            out = run(site, "deadletter", "replay", str(failed["id"]), "--wait", "60", "--as", "王芳")
            assert "delivered" in out
        finally:
            store.dispose()
        [result] = stored(site, "LabResult")
        assert result["person_key"] == person["person_key"]
        assert open_letters(site, "deliver") == []

        # Attempts are numbered once, in order, across deliveries and replays.
        log = json.loads(run(site, "deadletter", "show", str(failed["id"]), "--json"))["attempt_log"]
        assert [(a["attempt"], a["outcome"]) for a in log] == [
            (1, "retry"),
            (2, "dead_letter"),  # max_attempts 2
            (3, "replayed"),
            (4, "retry"),  # the store still refused
            (5, "dead_letter"),
            (6, "replayed"),  # then delivered
        ]

    # 7. The audit log has every step, each with the name given and the OS user.
    audit = json_lines(site, "deadletter", "audit")
    steps = sorted((entry["action"], entry["outcome"]) for entry in audit)
    assert ("show", "done") in steps
    assert ("reload", "done") in steps
    assert ("reprocess", "done") in steps
    # Each replay says what --wait saw (newest first): the first one failed again, the second delivered.
    assert [entry["outcome"] for entry in audit if entry["action"] == "replay"] == ["done", "failed"]
    assert {entry["os_user"] for entry in audit} == {me}
    assert {entry["actor"] for entry in audit if entry["action"] != "show"} == {"王芳"}
