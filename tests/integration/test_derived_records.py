"""The record store runs the clinical rules as records arrive, on SQLite and PostgreSQL:
suggested gradings and PMTCT cases stored beside the records, in the same transaction."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from channels.record_store.derive import Derivations
from channels.record_store.queries import timeline
from channels.record_store.store import RecordStore, ensure_schema
from core.database import make_engine
from support import REPO, pg_schema, stored_envelope
from transforms.rules.derivers import load_derivers

MOTHER = {"id_card": "500112199403151525", "his_id": "0010023456", "his_system": "HIS", "name": "陈思雨"}
RULES = [REPO / "mappings/rules/risk_five_colour.yaml", REPO / "mappings/rules/pmtct.yaml"]


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordStore]:
    derivations = Derivations(load_derivers(RULES))
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/store.db")
        ensure_schema(engine)
        yield RecordStore(engine, derivations)
        engine.dispose()
        return
    with pg_schema() as url:
        engine = make_engine(url)
        ensure_schema(engine)
        yield RecordStore(engine, derivations)
        engine.dispose()


env = stored_envelope


def registration() -> dict[str, Any]:
    return env(
        "PregnancyRegistration",
        "reg:HIS:1",
        {**MOTHER, "birth_date": "1994-03-15"},
        "2024-03-21T10:05:00+08:00",
        registration_date="2024-03-21",
        lmp="2024-01-08",
        height={"value": 160, "unit": "cm"},
        weight={"value": 52.5, "unit": "kg"},
        risk={"colour": "G"},
    )


def lab(
    record_id: str, day: str, code: str, value: str, *, status: str = "F", kind: str = "ST"
) -> dict[str, Any]:
    obs = {"code": code, "value_type": kind, "value": value, "status": status}
    return env(
        "LabResult",
        record_id,
        MOTHER,
        f"{day}T15:00:00+08:00",
        reported_at=f"{day}T15:00:00+08:00",
        observations=[obs],
    )


def derived(engine: Engine, kind: str) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "select payload, source_channel, person_key from records where record_type = :k order by event_time, record_id"
            ),
            {"k": kind},
        ).all()
    out = []
    for payload, channel, person_key in rows:
        value = payload if isinstance(payload, dict) else json.loads(payload)
        out.append({**value, "_channel": channel, "_person": person_key})
    return out


def everything_derived(engine: Engine) -> set[str]:
    rows = derived(engine, "RiskAssessment") + derived(engine, "PmtctCase")
    return {json.dumps({k: v for k, v in r.items() if k != "_person"}, sort_keys=True) for r in rows}


def suggested(engine: Engine) -> list[tuple[str, str, bool]]:
    return [
        (r["assessment_date"], r["colour"], r["purple"])
        for r in derived(engine, "RiskAssessment")
        if r.get("method") == "suggested"
    ]


def test_each_record_as_it_arrives_updates_her_suggested_grading(store: RecordStore) -> None:
    store.store([registration()])
    assert suggested(store.engine) == [("2024-03-21", "green", False)]
    store.store([lab("lab:1", "2024-04-20", "HGB", "96", kind="NM")])
    store.store([lab("lab:2", "2024-05-08", "TPPA", "阳性")])
    assert suggested(store.engine) == [
        ("2024-03-21", "green", False),
        ("2024-04-20", "yellow", False),
        ("2024-05-08", "yellow", True),
    ]
    rows = derived(store.engine, "RiskAssessment")
    person = {r["_person"] for r in rows}
    with store.engine.connect() as conn:
        her = conn.execute(text("select person_key from records where record_id = 'reg:HIS:1'")).scalar()
    assert person == {her} and {r["_channel"] for r in rows} == {"rules"}
    last = rows[-1]
    assert last["above_clinical"] is True and last["clinical_colour"] == "green"
    assert {f["code"]["code"] for f in last["factors"]} == {"anaemia", "syphilis"}


def test_a_positive_result_opens_a_case_for_the_pmtct_officer_and_a_correction_closes_it(
    store: RecordStore,
) -> None:
    store.store([registration()])
    store.store([lab("lab:hbv", "2024-03-25", "HBSAGQ", "阳性", status="P")])
    [case] = derived(store.engine, "PmtctCase")
    assert (case["infection"], case["status"], case["audience"]) == ("hbv", "provisional", "pmtct_officer")
    store.store([lab("lab:hbv", "2024-03-27", "HBSAGQ", "阳性")])
    [case] = derived(store.engine, "PmtctCase")
    assert case["status"] == "open"
    store.store([lab("lab:hbv", "2024-03-29", "HBSAGQ", "阴性", status="C")])
    [case] = derived(store.engine, "PmtctCase")
    assert case["status"] == "closed" and case["close_reason"] == "corrected_negative"
    # The grading follows the corrected result: purple is gone again.
    assert suggested(store.engine)[-1][1:] == ("green", False)


def test_the_infants_birth_gives_the_case_its_due_dates(store: RecordStore) -> None:
    store.store([registration(), lab("lab:hbv", "2024-03-25", "HBSAGQ", "阳性")])
    delivery = env(
        "DeliveryRecord",
        "del:1",
        MOTHER,
        "2024-10-08T16:10:00+08:00",
        delivery_time="2024-10-08T14:32:00+08:00",
    )
    baby = {"his_id": "0010031207", "his_system": "HIS", "name": "陈思雨之女"}
    newborn = env(
        "NewbornRecord",
        "nb:1",
        baby,
        "2024-10-08T16:15:00+08:00",
        mother=MOTHER,
        birth_time="2024-10-08T14:32:00+08:00",
        sex="2",
        birth_weight={"value": 3250, "unit": "g"},
        hbig=True,
        hep_b_vaccine=True,
        hep_b_vaccine_time="2024-10-08T15:00:00+08:00",
    )
    store.store([delivery])
    store.store([newborn])  # a record of the child wakes the rules for her mother
    [case] = derived(store.engine, "PmtctCase")
    assert case["delivery_date"] == "2024-10-08"
    infant = {i["id"]: i for i in case["items"] if i["who"] == "infant"}
    assert infant and all(i.get("due_by") for i in infant.values())
    done = {i for i, item in infant.items() if item["status"] == "done"}
    assert done, "the newborn record's HBIG and first vaccine dose mark items done"
    assert all(item["due_by"] >= "2024-10-08" for item in infant.values())


def test_one_bundle_and_one_record_at_a_time_give_the_same_derived_records(
    store: RecordStore, tmp_path: Path
) -> None:
    envelopes = [
        registration(),
        lab("lab:1", "2024-04-20", "HGB", "96", kind="NM"),
        lab("lab:2", "2024-05-08", "TPPA", "阳性"),
        lab("lab:3", "2024-06-08", "HGB", "121", kind="NM"),
    ]
    store.store(envelopes)
    together = everything_derived(store.engine)
    other = make_engine(f"sqlite:///{tmp_path}/other.db")
    ensure_schema(other)
    one_by_one = RecordStore(other, store.derivations)
    for envelope in reversed(envelopes):
        one_by_one.store([envelope])
    apart = everything_derived(other)
    other.dispose()
    assert together == apart and len(together) >= 4


def test_suggestions_read_in_her_timeline(store: RecordStore) -> None:
    store.store([registration(), lab("lab:1", "2024-04-20", "HGB", "96", kind="NM")])
    with store.engine.connect() as conn:
        her = conn.execute(text("select person_key from records where record_id = 'reg:HIS:1'")).scalar()
    entries = timeline(store.engine, her)
    assert [e["record_type"] for e in entries].count("RiskAssessment") == 2
    assert {e["source_channel"] for e in entries if e["record_type"] == "RiskAssessment"} == {"rules"}


def test_a_store_without_rules_derives_nothing(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/plain.db")
    ensure_schema(engine)
    RecordStore(engine).store([registration(), lab("lab:2", "2024-05-08", "TPPA", "阳性")])
    assert derived(engine, "RiskAssessment") == [] and derived(engine, "PmtctCase") == []
    engine.dispose()
