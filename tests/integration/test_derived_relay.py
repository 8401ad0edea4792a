"""Derived records reach destinations through routes.yaml: the record store writes its new or
changed suggestions and PMTCT cases to `derived_outbox`, a `derived` channel journals them,
and a route without a mapping hands them, unchanged, to HTTP receivers on 127.0.0.1 — the
staff alert receiver, the PMTCT officer's, and never a `reaches: patient` one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from derived_support import HBSAG, LOW_HB, REGISTRATION, posted, receiver, relay_routes
from http_receiver import Seen

from channels.mllp.ack import parse_acks
from monitors.engine_status import collect
from monitors.process_monitor import ProcessMonitor
from support import RunningEngine, scalar, wait_until


@pytest.fixture(scope="module")
def relayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningEngine, Seen]]:
    tmp = tmp_path_factory.mktemp("relay")
    with receiver() as (url, seen), RunningEngine(relay_routes(tmp, url)) as engine:
        for message in (REGISTRATION, LOW_HB):
            [ack] = engine.send([message])
            assert [a.code for a in parse_acks((ack or b"").decode("latin-1"))] == ["AA"]
        wait_until(lambda: any(r.get("above_clinical") for r in posted(seen, "/staff")))
        yield engine, seen


def _settled(engine: RunningEngine) -> bool:
    pending = "select count(*) from journal_deliveries where status != 'delivered'"
    waiting = "select count(*) from journal_messages where status = 'received'"
    return not scalar(engine.journal, pending) and not scalar(engine.journal, waiting)


def test_a_low_hb_above_the_clinical_grading_reaches_the_staff_receiver(
    relayed: tuple[RunningEngine, Seen],
) -> None:
    engine, seen = relayed
    wait_until(lambda: _settled(engine))
    staff = posted(seen, "/staff")
    assert {r["record_type"] for r in staff} == {"RiskAssessment"}
    assert [(r["assessment_date"], r["colour"], r["above_clinical"]) for r in staff] == [
        ("2024-03-21", "yellow", True)
    ], staff
    [alert] = staff
    assert alert["method"] == "suggested" and alert["clinical_colour"] == "green"
    factor = {f["code"]["code"]: f for f in alert["factors"]}["anaemia"]
    assert factor["source_observation"]["value"] == "96 g/L"
    # The record passed on unchanged: what the receiver got is what the store holds.
    stored = scalar(engine.store(), "select payload from records where record_id = :r", r=alert["record_id"])
    stored = stored if isinstance(stored, dict) else json.loads(stored)
    assert {k: v for k, v in alert.items() if k in stored} == stored
    assert posted(seen, "/patient") == []


def test_a_pmtct_case_reaches_the_officer_and_never_the_patient_destination(
    relayed: tuple[RunningEngine, Seen],
) -> None:
    engine, seen = relayed
    [ack] = engine.send([HBSAG])
    assert [a.code for a in parse_acks((ack or b"").decode("latin-1"))] == ["AA"]
    wait_until(lambda: posted(seen, "/pmtct"))
    wait_until(lambda: _settled(engine))
    cases = posted(seen, "/pmtct")
    assert {(c["record_type"], c["infection"], c["audience"]) for c in cases} == {
        ("PmtctCase", "hbv", "pmtct_officer")
    }
    assert posted(seen, "/patient") == []
    # The guard logged the withholding, it did not fail the message.
    failed = "select count(*) from journal_messages where channel = 'rules' and status = 'failed'"
    assert scalar(engine.journal, failed) == 0
    # The HBsAg also moved her grading to purple: a new alert for staff.
    assert any(r["purple"] for r in posted(seen, "/staff"))


def test_the_outbox_is_empty_and_each_derived_record_was_journaled_once(
    relayed: tuple[RunningEngine, Seen],
) -> None:
    engine, seen = relayed
    wait_until(lambda: _settled(engine))
    wait_until(lambda: scalar(engine.store(), "select count(*) from derived_outbox") == 0)
    with engine.journal.connect() as conn:
        rows = conn.exec_driver_sql(
            "select control_id, message_type, sender, status from journal_messages where channel = 'rules'"
        ).all()
    assert rows and all(r.control_id.startswith("derived:") and r.sender == "record_store" for r in rows)
    assert {r.message_type for r in rows} <= {"RiskAssessment", "PmtctCase"}
    assert {r.status for r in rows} == {"routed"}
    assert len(posted(seen, "/staff")) + len(posted(seen, "/pmtct")) == len(rows)


def test_status_shows_the_derived_channel_running(relayed: tuple[RunningEngine, Seen]) -> None:
    engine, _seen = relayed
    monitor = ProcessMonitor(engine.runtime)
    asyncio.run_coroutine_threadsafe(monitor.beat_now(), engine.loop).result(10)
    status = collect(engine.settings)
    channel = next(c for c in status.channels if c.name == "rules")
    assert channel.listening and channel.error is None
    assert channel.listen.startswith("record_store (sqlite:")
    assert channel.routed >= 2
    assert not [p for p in status.problems if "rules" in p], status.problems
