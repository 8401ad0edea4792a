"""No command writes patient data into a log line.

The engine runs as `mch-engine run`; the commands an operator uses run as subprocesses,
as the on-call runs them, against a journal and store that hold real-looking Chinese
patients (names, 身份证号, mobile numbers, HIS ids, a birth date that a mapping rule
quotes). Every log line any of them writes, on stderr or by mistake on stdout, is read
and searched for those values. What a command prints on purpose for the operator
(`records list`, `deadletter show`) is not a log and may show them (docs/operations.md).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from faults.engine_process import EngineProcess, delete_broker_objects, engine_env, mch, wait_for

from core.database import make_engine
from support import AMQP_URL, REPO, free_port, hl7, require_service, scalar

pytestmark = [pytest.mark.services, pytest.mark.slow]

MOTHER, MOTHER_ID_CARD, MOTHER_HIS, MOBILE = "陈思雨", "500112199403151525", "0010023456", "13900001234"
CHILD, CHILD_ID_CARD, CHILD_HIS = "李沐瑶", "500112202410080264", "0010031207"
BIRTH = "2025-06-01"  # after the exam date: the age_in_months rule fails quoting it
SECRETS = [MOTHER, MOTHER_ID_CARD, MOTHER_HIS, MOBILE, CHILD, CHILD_ID_CARD, CHILD_HIS, BIRTH, "20250601"]

# structlog's own console format, which a command with no logging set up writes to stdout.
_CONSOLE_EVENT = re.compile(r"\[\s*(debug|info|warning|error|critical)\s*\]")


def registration(control_id: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20250301080000||ADT^A04^ADT_A01|{control_id}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        "EVN|A04|20250301080000",
        f"PID|1||{MOTHER_HIS}^^^HIS^PI~{MOTHER_ID_CARD}^^^^ID||{MOTHER}^^^^^^L||19940315|F|||"
        f"金龙路18号^^重庆市||^PRN^CP^^86^^{MOBILE}",
    )


def child_check(control_id: str) -> bytes:
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20250410093000||ORU^R01^ORU_R01|{control_id}|P|2.5|||AL|NE|CHN|UNICODE UTF-8",
        f"PID|1||{CHILD_HIS}^^^HIS^PI~{CHILD_ID_CARD}^^^^ID||{CHILD}^^^^^^L||{BIRTH.replace('-', '')}|F"
        f"|||||||||||{MOTHER_HIS}^^^HIS^PI~{MOTHER_ID_CARD}^^^^ID",
        "OBR|1||JC2025041000041|MCH-CHK^儿童健康检查^99FYMCH|||20250410093000",
    )


def routes_yaml(directory: Path, database: str, prefix: str) -> Path:
    path = directory / "routes.yaml"
    path.write_text(
        f"""version: 1
engine:
  broker: {AMQP_URL!r}
  database: {database!r}
  queue_prefix: {prefix}
  allowed_paths: [{str(REPO / "mappings")!r}]
channels:
  hospital: {{type: mllp, listen: "127.0.0.1:{free_port()}", encoding: utf-8}}
routes:
  - name: persons
    from: [hospital]
    message_type: [ADT^A04]
    mapping: {REPO / "mappings/his/adt_person.yaml"}
    to: [record_store]
  - name: child-health
    from: [hospital]
    message_type: ORU^R01
    when: OBR-4.1 == MCH-CHK
    mapping: {REPO / "mappings/his/child_health.yaml"}
    to: [record_store]
destinations:
  record_store: {{type: record_store}}
""",
        encoding="utf-8",
    )
    return path


def log_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    """Every line the command logged: all of stderr, and any log event that went to stdout."""
    stray = [ln for ln in done.stdout.splitlines() if _CONSOLE_EVENT.search(ln) or _is_event(ln)]
    return done.stderr.splitlines() + stray


def _is_event(line: str) -> bool:
    try:
        obj = json.loads(line)
    except ValueError:
        return False
    return isinstance(obj, dict) and "event" in obj and "level" in obj


def leaks(lines: list[str]) -> list[tuple[str, str]]:
    return [(s, ln) for ln in lines for s in SECRETS if s in ln]


def test_no_command_logs_names_id_numbers_or_the_values_a_rule_quotes(tmp_path: Path) -> None:
    """send, messages, records, deadletter list/show/reprocess/replay, mapping explain, check, run: no patient data in any log line."""
    require_service("127.0.0.1", 5672, "RabbitMQ")
    tag = uuid.uuid4().hex[:6].upper()
    prefix = f"priv{tag.lower()}"
    config = routes_yaml(tmp_path, f"sqlite:///{tmp_path}/engine.db", prefix)
    (tmp_path / "adt.hl7").write_bytes(registration(f"PRIV{tag}-1"))
    (tmp_path / "check.hl7").write_bytes(child_check(f"PRIV{tag}-2"))
    db = make_engine(f"sqlite:///{tmp_path}/engine.db")
    engine = EngineProcess(config)
    ran: dict[str, subprocess.CompletedProcess[str]] = {}
    try:
        engine.start()
        port = engine.port()
        ran["send"] = _plain(tmp_path, "send", "adt.hl7", "check.hl7", "--to", f"127.0.0.1:{port}")
        assert ran["send"].returncode == 0, ran["send"].stdout + ran["send"].stderr
        wait_for(lambda: scalar(db, "select count(*) from persons") == 1, 20, "the mother stored", engine)
        wait_for(lambda: scalar(db, "select count(*) from dead_letters") == 1, 20, "the dead letter", engine)
        dl = str(scalar(db, "select id from dead_letters"))

        for name, args in {
            "messages list": ("messages", "list"),
            "records list": ("records", "list"),
            "records timeline": ("records", "timeline", "--person", MOTHER_ID_CARD),
            "deadletter list": ("deadletter", "list"),
            "deadletter show": ("deadletter", "show", dl),
            "deadletter reprocess": ("deadletter", "reprocess", dl, "--as", "值班"),
            "deadletter replay": ("deadletter", "replay", dl),
            "deadletter audit": ("deadletter", "audit"),
            "mapping explain": ("mapping", "explain", str(tmp_path / "check.hl7"), "--channel", "hospital"),
            "check": ("check",),
        }.items():
            ran[name] = mch(config, *args)
        assert engine.stop() == 0
    finally:
        engine.kill()
        db.dispose()
        delete_broker_objects(prefix, ["record_store"])

    # The commands did their work (a silent command would leak nothing).
    assert MOTHER in ran["records list"].stdout  # operator output, on purpose
    assert "still fails" in ran["deadletter reprocess"].stdout
    for name, done in ran.items():
        assert not [ln for ln in done.stdout.splitlines() if _CONSOLE_EVENT.search(ln)], (
            f"{name} logged to stdout"
        )
        assert not leaks(log_lines(done)), f"{name}: {leaks(log_lines(done))}"
    # The engine ran the mapping, at arrival and again for the reprocess: masked JSON lines.
    engine_log = (tmp_path / "engine.log").read_text(encoding="utf-8").splitlines()
    failed = [ln for ln in engine_log if '"transform_failed"' in ln and "derive age_in_months" in ln]
    assert len(failed) == 2, failed
    assert not leaks(engine_log), leaks(engine_log)


def _plain(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """A command that takes no --config (`send`), as the on-call runs it."""
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "--lang", "en", *args],
        cwd=cwd,
        env=engine_env(),
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
    )


def test_an_unexpected_failure_is_one_masked_line_not_a_traceback(tmp_path: Path) -> None:
    """`messages list` on a journal file that is not a database: exit 1, a `command_failed`
    JSON log line and one line for the operator. (A database that cannot be reached is not
    unexpected: one line naming it, exit 2; tests/integration/test_cli_operator_errors.py.)"""
    (tmp_path / "engine.db").write_bytes(b"not a database" * 200)
    config = routes_yaml(tmp_path, f"sqlite:///{tmp_path}/engine.db", "unused")
    done = mch(config, "messages", "list")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    log, said = done.stderr.splitlines()
    event = json.loads(log)
    assert {k: event[k] for k in ("event", "command", "error")} == {
        "event": "command_failed",
        "command": "cmd_messages_list",
        "error": "DatabaseError",
    }
    assert "detail" not in event  # an error's text may quote a value: the log leaves it out
    assert said.startswith("the command failed (DatabaseError): ")
