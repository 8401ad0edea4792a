"""The `wechat` destination: notices from real records, into the ledger, never twice.

Records are the shipped samples mapped by the shipped routes.yaml. The WeChat API and the
bindings are stood in by small real implementations of the destination's two protocols
(a sender that records what it is asked to send and raises WeChat's errors when told; an
in-memory list of bindings); the tests against the WeChat stand-in come with the API client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from channels.mllp.ack import parse_acks
from channels.wechat import delivery_reports, ledger
from channels.wechat.destination import WechatSink
from channels.wechat.errors import Undeliverable
from channels.wechat.keys import KeyValueRefused
from channels.wechat.notices import fill
from channels.wechat.settings import WechatDestination
from core.errors import ConfigError, ConfigErrors, TransientDeliveryError
from core.settings import load_settings
from engine.live_reload import compile_routes
from engine.mapping_trial import try_file
from support import (
    REPO,
    RunningEngine,
    dead_letter_reasons,
    engine_database,
    free_port,
    scalar,
    wait_until,
    write_routes,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
LIS = REPO / "mappings/lis/samples"
HIS = REPO / "mappings/his/samples"
BLOOD_ROUTINE = LIS / "003_ORU-R01_utf-8__lis-blood-routine.hl7"
MOTHER_ID_CARD = "500112199403151525"  # 陈思雨, in the blood routine sample
SHIPPED = load_settings(REPO / "routes.yaml", env={})


# --------------------------------------------------------------------------- stand-ins


class RecordingSender:
    """Records each send; raises the queued errors first, one per call."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.errors: list[Exception] = []

    def send_template(
        self, openid: str, template_id: str, data: dict[str, str], url: str | None, client_msg_id: str
    ) -> str:
        if self.errors:
            raise self.errors.pop(0)
        self.received.append(
            {"openid": openid, "template_id": template_id, "data": data, "url": url, "id": client_msg_id}
        )
        return f"msg-{len(self.received)}"


class MemoryBindings:
    """Bindings as rows: openid, id_card or his_system + his_id, role."""

    def __init__(self, rows: list[dict[str, str]]) -> None:
        self.rows = rows

    def openids_for(self, person_ref: dict[str, Any]) -> list[str]:
        found = []
        for row in self.rows:
            if row.get("role", "patient") != "patient":
                continue
            by_card = row.get("id_card") and row.get("id_card") == person_ref.get("id_card")
            by_his = row.get("his_id") and (row.get("his_system"), row.get("his_id")) == (
                person_ref.get("his_system"),
                person_ref.get("his_id"),
            )
            if by_card or by_his:
                found.append(row["openid"])
        return found

    def staff_openids(self, role: str) -> list[str]:
        return [row["openid"] for row in self.rows if row.get("role") == role]


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


MOTHER = "oMother0000000000000001"
OFFICER = "oOfficer000000000000001"
BINDINGS = MemoryBindings(
    [
        {"openid": MOTHER, "id_card": MOTHER_ID_CARD},
        {"openid": OFFICER, "role": "high_risk_officer"},
    ]
)


def envelopes_of(path: Path, channel: str = "hospital") -> list[dict[str, Any]]:
    """The envelopes the shipped routes make of a sample file (as the transform stage would)."""
    router = compile_routes(SHIPPED).router
    return [env for trial in try_file(path.read_bytes(), SHIPPED, router, channel) for env in trial.envelopes]


def lab_result() -> dict[str, Any]:
    [envelope] = [e for e in envelopes_of(BLOOD_ROUTINE) if e["record_type"] == "LabResult"]
    return envelope


def rows(db: Any) -> list[dict[str, Any]]:
    with db.connect() as conn:
        query = select(ledger.notices).order_by(ledger.notices.c.id)
        return [dict(r) for r in conn.execute(query).mappings()]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with engine_database(request.param, tmp_path) as engine:
        ledger.ensure_schema(engine)
        yield engine


def sink(db: Any, name: str = "wechat_patient", **kw: Any) -> WechatSink:
    settings = SHIPPED.destinations[name]
    assert isinstance(settings, WechatDestination)
    kw.setdefault("recipients", BINDINGS)
    kw.setdefault("sender", RecordingSender())
    return WechatSink(name, settings, db, SHANGHAI, **kw)


# Thursday 2024-03-21 in Shanghai: 11:00 is outside quiet hours, 22:30 inside them.
DAYTIME = datetime(2024, 3, 21, 11, 0, tzinfo=SHANGHAI).astimezone(UTC)
NIGHT = datetime(2024, 3, 21, 22, 30, tzinfo=SHANGHAI).astimezone(UTC)


# --------------------------------------------------------------------------- what a notice says


def test_the_report_ready_notice_names_the_order_and_time_only() -> None:
    record = lab_result()["record"]
    [rule] = SHIPPED.destinations["wechat_patient"].notices  # type: ignore[union-attr]
    notice = fill(rule, record, SHANGHAI)
    assert notice.data == {"thing1": "血常规", "time2": "2024-03-21 11:35"}


def _forbidden(record: dict[str, Any]) -> set[str]:
    """What a patient may never read in a notice: values, diagnoses, names, ID numbers."""
    found: set[str] = set()
    for who in ("person", "mother"):
        ref = record.get(who) or {}
        found |= {str(ref[k]) for k in ("name", "id_card", "his_id") if ref.get(k)}
    for obs in record.get("observations", []):
        values = obs.get("value") if isinstance(obs.get("value"), list) else [obs.get("value")]
        for value in values:
            text = value.get("display") or value.get("code") if isinstance(value, dict) else value
            if text is not None:
                number = f"{text:g}" if isinstance(text, float) else str(text)
                if len(number) >= 2:
                    found.add(number)
        if obs.get("interpretation"):
            found.add(json.dumps(obs["interpretation"], ensure_ascii=False))

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and any(w in key for w in ("diagnos", "conclusion", "notes", "guidance")):
            found.add(value)

    walk(record)
    return {f for f in found if f.strip()}


def test_no_shipped_patient_notice_carries_clinical_content() -> None:
    """Every shipped sample, mapped by the shipped routes, through every patient notice rule of
    routes.yaml: no result value, diagnosis, full name or ID number reaches what is sent."""
    patient = [d for d in SHIPPED.destinations.values() if isinstance(d, WechatDestination)]
    patient = [d for d in patient if d.reaches == "patient"]
    assert patient, "routes.yaml ships a patient destination"
    made = 0
    for path in sorted([*LIS.glob("*.hl7"), *HIS.glob("*.hl7")]):
        if "MALFORMED" in path.name:
            continue
        channel = "lis_gbk" if "gb18030" in path.name or "gbk" in path.name else "hospital"
        for envelope in envelopes_of(path, channel):
            record = envelope["record"]
            forbidden = _forbidden(record)
            for destination in patient:
                for rule in destination.notices:
                    if not rule.matches(envelope["record_type"], record):
                        continue
                    notice = fill(rule, record, SHANGHAI)
                    sent = " ".join([*notice.data.values(), notice.url or ""])
                    assert not [f for f in forbidden if f in sent], (path.name, sent)
                    made += 1
    assert made >= 8  # the lab samples do make notices


def patient_destination(key: str) -> str:
    """routes.yaml text of a patient destination whose one LabResult rule has this one key."""
    return (
        "  wechat_patient:\n    type: wechat\n    notices:\n      - record_type: LabResult\n"
        f"        event: report_ready\n        template_id: T1\n        keys:\n          {key}\n"
    )


def test_a_patient_rule_that_would_carry_a_value_is_refused_at_load(tmp_path: Path) -> None:
    extra = patient_destination('thing1: {type: thing, value: "{record.observations.0.value}"}')
    routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/e.db", extra=extra)
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_settings(routes, env={})
    text = str(caught.value)
    assert "record.observations.0.value" in text and "patient notice may not carry" in text
    assert f"{routes.name}:" in text and ":None" not in text  # located to a line


def test_a_value_wechat_would_refuse_names_the_key_and_rule(db: Any) -> None:
    settings = SHIPPED.destinations["wechat_patient"].model_copy(deep=True)  # type: ignore[union-attr]
    settings.notices[0].keys["thing1"].value = "{record.order.display}（含全部二十个检验项目的详细说明文字）"
    sender = RecordingSender()
    target = WechatSink("wechat_patient", settings, db, SHANGHAI, sender=sender, recipients=BINDINGS)
    with pytest.raises(KeyValueRefused) as caught:
        target.store([lab_result()])
    assert "thing1 (thing)" in str(caught.value) and "at most 20 characters" in str(caught.value)
    assert sender.received == [] and rows(db) == []  # nothing sent, nothing written


# --------------------------------------------------------------------------- ledger and sending


def test_the_same_envelope_twice_sends_once(db: Any) -> None:
    sender = RecordingSender()
    target = sink(db, sender=sender, clock=Clock(DAYTIME))
    envelope = lab_result()
    target.store([envelope])
    target.store([envelope])  # a replay, a re-drive, a reprocess
    assert len(sender.received) == 1
    [row] = rows(db)
    assert (row["status"], row["msgid"], row["recipient"]) == ("sent", "msg-1", MOTHER)
    assert sender.received[0]["id"] == row["client_msg_id"]


def test_a_transient_failure_is_sent_on_redelivery_with_the_same_client_msg_id(db: Any) -> None:
    sender = RecordingSender()
    sender.errors.append(TransientDeliveryError("WeChat -1: system busy"))
    target = sink(db, sender=sender, clock=Clock(DAYTIME))
    with pytest.raises(TransientDeliveryError):
        target.store([lab_result()])
    assert rows(db)[0]["status"] == "queued"
    target.store([lab_result()])
    [row] = rows(db)
    assert row["status"] == "sent" and [r["id"] for r in sender.received] == [row["client_msg_id"]]


def test_wechats_delivery_report_shows_against_the_notice(db: Any) -> None:
    """TEMPLATESENDJOBFINISH, recorded by msgid by the callback, is read with the notice."""
    target = sink(db, clock=Clock(DAYTIME))
    target.store([lab_result()])
    [row] = rows(db)
    with db.begin() as conn:
        delivery_reports.record_delivery_report(conn, row["msgid"], "failed:user block", DAYTIME)
    with db.connect() as conn:
        [listed] = ledger.list_notices(conn)
    assert (listed["status"], listed["delivery"]) == ("sent", "failed:user block")


def test_not_following_is_undeliverable_without_retry(db: Any) -> None:
    sender = RecordingSender()
    sender.errors.append(Undeliverable(43004, "require subscribe"))
    target = sink(db, sender=sender, clock=Clock(DAYTIME))
    target.store([lab_result()])  # no exception: the delivery is done
    target.store([lab_result()])
    [row] = rows(db)
    assert (row["status"], row["reason"]) == ("undeliverable", "not_following (43004)")
    assert sender.received == []


def test_a_person_without_a_binding_is_recorded_unbound(db: Any) -> None:
    sender = RecordingSender()
    target = sink(db, sender=sender, recipients=MemoryBindings([]), clock=Clock(DAYTIME))
    target.store([lab_result()])
    [row] = rows(db)
    assert (row["status"], row["reason"], row["recipient"]) == ("undeliverable", "no_binding", "")
    assert sender.received == []


def test_quiet_hours_hold_until_morning_then_send(db: Any) -> None:
    clock = Clock(NIGHT)
    sender = RecordingSender()
    target = sink(db, sender=sender, clock=clock)
    target.store([lab_result()])
    [row] = rows(db)
    assert row["status"] == "held" and sender.received == []
    assert row["due_at"] == datetime(2024, 3, 22, 8, 0, tzinfo=SHANGHAI)
    clock.now = datetime(2024, 3, 22, 7, 59, tzinfo=SHANGHAI)
    assert target.send_due() == 0 and sender.received == []
    clock.now = datetime(2024, 3, 22, 8, 0, tzinfo=SHANGHAI)
    assert target.send_due() == 1
    [row] = rows(db)
    assert row["status"] == "sent" and len(sender.received) == 1
    assert target.send_due() == 0 and len(sender.received) == 1


def test_a_held_notice_older_than_stale_after_is_dropped(db: Any) -> None:
    clock = Clock(NIGHT)
    sender = RecordingSender()
    target = sink(db, sender=sender, clock=clock)
    target.store([lab_result()])
    clock.now = NIGHT + timedelta(hours=24, minutes=1)  # the engine was away all day
    target.send_due()
    [row] = rows(db)
    assert row["status"] == "stale" and sender.received == []


def test_a_staff_alert_is_never_delayed(db: Any) -> None:
    sender = RecordingSender()
    target = sink(db, "wechat_staff", sender=sender, clock=Clock(NIGHT))
    record = {
        "record_type": "RiskAssessment",
        "record_id": "RiskAssessment:rules:id_card:" + MOTHER_ID_CARD + ":2024-03-26",
        "person": {"id_card": MOTHER_ID_CARD, "name": "陈思雨", "id_card_valid": True},
        "assessment_date": "2024-03-26",
        "colour": "yellow",
        "purple": True,
        "method": "suggested",
        "above_clinical": True,
    }
    envelope = {"record_type": "RiskAssessment", "record_id": record["record_id"], "record": record}
    target.store([envelope])
    assert [(r["openid"], r["data"]) for r in sender.received] == [
        (OFFICER, {"thing1": "孕产妇陈**", "phrase2": "黄色", "date3": "2024-03-26"})
    ]
    target.store([{**envelope, "record": {**record, "above_clinical": False}, "record_id": "other"}])
    assert len(sender.received) == 1  # not above the clinical grading: no alert


def test_a_record_for_the_pmtct_officer_never_reaches_a_patient(db: Any) -> None:
    sender = RecordingSender()
    target = sink(db, sender=sender, clock=Clock(DAYTIME))
    envelope = lab_result()
    envelope = {**envelope, "record": {**envelope["record"], "audience": "pmtct_officer"}}
    target.store([envelope])  # even though the rule matches and she is bound
    assert sender.received == [] and rows(db) == []


def test_outbox_mode_writes_and_sends_nothing(db: Any) -> None:
    target = sink(db, sender=None, clock=Clock(NIGHT))
    target.store([lab_result()])
    target.store([lab_result()])
    [row] = rows(db)
    assert (row["status"], row["recipient"], row["due_at"]) == ("outbox", MOTHER, None)
    assert target.send_due() == 0


# --------------------------------------------------------------------------- through the engine


def _env(tmp: Path) -> dict[str, str]:
    return {
        "MCH_DB_URL": f"sqlite:///{tmp}/engine.db",
        "MCH_MLLP_LISTEN": f"127.0.0.1:{free_port()}",
        "MCH_MLLP_GBK_LISTEN": f"127.0.0.1:{free_port()}",
        "MCH_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
    }


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MCH_WECHAT_APPID", raising=False)
    monkeypatch.delenv("MCH_WECHAT_SECRET", raising=False)


def test_a_lab_result_over_mllp_lands_in_the_outbox(tmp_path: Path, no_credentials: None) -> None:
    env = _env(tmp_path)
    with RunningEngine(REPO / "routes.yaml", env=env) as engine:
        [ack] = engine.send([BLOOD_ROUTINE.read_bytes()])
        assert [a.code for a in parse_acks((ack or b"").decode("latin-1"))] == ["AA"]
        wait_until(lambda: scalar(engine.journal, "select count(*) from wechat_notices") == 1)
        wait_until(
            lambda: (
                scalar(engine.journal, "select count(*) from journal_deliveries where status != 'delivered'")
                == 0
            )
        )
    cli = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--lang", "en", "wechat", "outbox", "--config", "routes.yaml"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert cli.returncode == 0, cli.stderr
    assert "outbox (not sent)" in cli.stdout and "thing1=血常规 time2=2024-03-21 11:35" in cli.stdout
    assert "(not bound)" in cli.stdout and "TPL_REPORT_READY" in cli.stdout
    assert "陈思雨" not in cli.stdout and MOTHER_ID_CARD not in cli.stdout and "118" not in cli.stdout


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_a_refused_key_value_becomes_a_dead_letter(tmp_path: Path, kind: str, no_credentials: None) -> None:
    extra = patient_destination('phrase1: {type: phrase, value: "{record.order.display}报告已出"}')
    with engine_database(kind, tmp_path) as db:
        url = db.url.render_as_string(hide_password=False)
        routes = write_routes(tmp_path, database=url, lab_to="record_store, wechat_patient", extra=extra)
        with RunningEngine(routes) as engine:
            engine.send([BLOOD_ROUTINE.read_bytes()])
            wait_until(lambda: dead_letter_reasons(engine))
            [reason] = dead_letter_reasons(engine)
            assert "phrase1 (phrase)" in reason and "at most 5 Chinese characters" in reason
            assert scalar(engine.journal, "select count(*) from wechat_notices") == 0
