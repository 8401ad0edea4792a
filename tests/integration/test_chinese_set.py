"""The synthetic Chinese MCH set through the shipped routes.yaml: what expected.tsv says, and one timeline.

Every message is sent over MLLP to the channel its charset needs, in file order (one
mother's whole cycle among them); then each row of expected.tsv is checked in the
record store: record type, subject, number of observations, the mother link of a
newborn or child, flagged ID cards, the correction that replaces a result, and the
A40 merge. Finally the mother's timeline must hold her records from HIS, LIS and PACS
and her daughter's, in time order.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from channels.mllp.ack import parse_acks
from channels.record_store.queries import resolve_person, timeline
from support import CHINESE, REPO, REPORT, RunningEngine, scalar, shipped_env, wait_until

MOTHER_ID = "500112199403151525"


def _rows() -> list[dict[str, str]]:
    with (CHINESE / "expected.tsv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningEngine]:
    env = shipped_env(tmp_path_factory.mktemp("chinese"))
    with RunningEngine(REPO / "routes.yaml", env=env) as running:
        for name in sorted({r["file"] for r in _rows()}):
            rows = [r for r in _rows() if r["file"] == name]
            channel = "lis_gbk" if rows[0]["channel_encoding"] == "gb18030" else "hospital"
            ack = running.send([(CHINESE / name).read_bytes()], channel=channel)[0]
            codes = [a.code for a in parse_acks((ack or b"").decode("latin-1"))]
            assert codes == [r["ack"] for r in rows], f"{name}: {codes}"
        journal = running.journal
        wait_until(
            lambda: scalar(journal, "select count(*) from journal_messages where status = 'received'") == 0
        )
        wait_until(
            lambda: (
                scalar(journal, "select count(*) from journal_deliveries where status != 'delivered'") == 0
            )
        )
        yield running


def _records_of(engine: RunningEngine, control_id: str) -> list[dict[str, Any]]:
    """The stored records a message became (through its journal deliveries)."""
    with engine.journal.connect() as conn:
        ids = [
            r[0]
            for r in conn.execute(
                text(
                    "select distinct d.record_id from journal_deliveries d join journal_messages m "
                    "on m.id = d.journal_id where m.control_id = :c"
                ),
                {"c": control_id},
            )
        ]
        status = conn.execute(
            text("select status, error from journal_messages where control_id = :c"), {"c": control_id}
        ).first()
    assert status is not None and status[0] == "routed", f"{control_id}: {status}"
    out = []
    with engine.store().connect() as conn:
        people = [
            (key, p if isinstance(p, dict) else json.loads(p))
            for key, p in conn.execute(text("select person_key, payload from persons"))
        ]
        for rid in ids:
            row = conn.execute(
                text("select record_type, person_key, payload from records where record_id = :r"), {"r": rid}
            ).first()
            if row is not None:
                payload = row[2] if isinstance(row[2], dict) else json.loads(row[2])
                out.append(
                    {"record_type": row[0], "person_key": row[1], "payload": payload, "record_id": rid}
                )
                continue
            for key, payload in people:  # a Person is stored in persons, under its person key
                if payload.get("record_id") == rid:
                    out.append(
                        {"record_type": "Person", "person_key": key, "payload": payload, "record_id": rid}
                    )
    return out


def _person(engine: RunningEngine, key: str) -> dict[str, Any]:
    with engine.store().connect() as conn:
        row = conn.execute(
            text("select name, id_card, mother_key, merged_into from persons where person_key = :k"),
            {"k": key},
        ).first()
    assert row is not None, key
    return {"name": row[0], "id_card": row[1], "mother_key": row[2], "merged_into": row[3]}


STORED = [r for r in _rows() if r["disposition"].startswith("stored")]


@pytest.mark.parametrize("row", STORED, ids=[f"{r['file'][:3]}-{r['msg_index']}" for r in STORED])
def test_each_message_becomes_what_expected_tsv_says(engine: RunningEngine, row: dict[str, str]) -> None:
    """Record type, subject, observation count and mother link as expected.tsv gives them."""
    records = [r for r in _records_of(engine, row["control_id"]) if r["record_type"] != "PersonMerge"]
    kinds = [r["record_type"] for r in records]
    assert row["record_type"] in kinds, kinds
    record = next(r for r in records if r["record_type"] == row["record_type"])
    payload = record["payload"]
    observations = payload.get("observations", [])
    assert len(observations) == int(row["n_obs"]), f"{len(observations)} observations"
    subject = payload.get("person") or {}
    superseded = payload.get("source", {}).get("control_id") != row["control_id"]
    if superseded:  # updated by a later message of the set (A08 after A04, a correction)
        assert payload["source"]["control_id"] in {r["control_id"] for r in _rows()}
    else:
        assert subject.get("name") == row["name"]
        if row["id_card"]:
            assert subject.get("id_card") == row["id_card"]
    person_key = record["person_key"] or resolve_person(engine.store(), subject.get("his_id") or "")
    assert person_key, "record not linked to a person"
    if row["mother_id_card"]:
        mother_key = _person(engine, resolve_person(engine.store(), person_key) or person_key)["mother_key"]
        assert mother_key, "child not linked to its mother"
        assert _person(engine, mother_key)["id_card"] == row["mother_id_card"]


def test_bad_id_card_is_flagged_and_never_used_for_linking(engine: RunningEngine) -> None:
    """杨倩's ID card has a wrong check character: stored with a flag, not registered as an identifier."""
    (record,) = _records_of(engine, "HIS2024092609150300801")
    assert any(f["code"] == "id_card_check_digit" for f in record["payload"]["flags"])
    assert (
        scalar(engine.store(), "select count(*) from person_identifiers where value = '500112199210052283'")
        == 0
    )


def test_correction_replaces_the_earlier_result(engine: RunningEngine) -> None:
    """009 corrects 008 under the same filler order: one LabResult, 2 h glucose now 8.2 with status C."""
    (original,) = _records_of(engine, "LIS240710114207001562")
    (corrected,) = _records_of(engine, "LIS240711090315001601")
    assert original["record_id"] == corrected["record_id"]
    store = engine.store()
    assert scalar(store, "select count(*) from records where record_id = :r", r=original["record_id"]) == 1
    payload = corrected["payload"]
    changed = [o for o in payload["observations"] if o.get("status") == "C"]
    assert len(changed) == 1 and changed[0]["value"] == 8.2


def test_a40_merge_moves_the_duplicate_to_the_survivor(engine: RunningEngine) -> None:
    """After the A40, the retired HIS id 0010025555 resolves to the surviving person with the ID card."""
    survivor = resolve_person(engine.store(), "0010023333")
    assert survivor is not None
    assert resolve_person(engine.store(), "0010025555") == survivor
    assert _person(engine, survivor)["id_card"] == "50011219950220168X"


def test_mothers_timeline_links_his_lis_and_pacs_and_her_daughter(engine: RunningEngine) -> None:
    """陈思雨's timeline: registration, labs, ultrasound, visits, delivery, postpartum, then her daughter."""
    store = engine.store()
    key = resolve_person(store, MOTHER_ID)
    assert key is not None
    items = timeline(store, key)
    kinds = [i["record_type"] for i in items]
    channels = {i["record"].get("source", {}).get("sending_system", "").split("^")[0] for i in items}
    assert {"HIS", "LIS", "PACS"} <= channels, channels
    for wanted in (
        "PregnancyRegistration",
        "LabResult",
        "ImagingReport",
        "PrenatalVisit",
        "DeliveryRecord",
        "PostpartumVisit",
        "NewbornRecord",
        "ChildHealthExam",
    ):
        assert wanted in kinds, f"{wanted} missing from {kinds}"
    times = [i["event_time"] for i in items if i["event_time"]]
    assert times == sorted(times)
    assert (
        kinds.index("PregnancyRegistration") < kinds.index("DeliveryRecord") < kinds.index("PostpartumVisit")
    )
    children = {i["person_name"] for i in items if i["is_child"]}
    assert children == {"李沐瑶"}
    REPORT.append(
        f"timeline of the synthetic mother: {len(items)} records, {' → '.join(dict.fromkeys(i['stage'] for i in items))}"
    )


def test_no_message_of_the_set_failed(engine: RunningEngine) -> None:
    """Every accepted synthetic message maps: none is left failed or unrouted."""
    with engine.journal.connect() as conn:
        bad = conn.execute(
            text(
                "select control_id, status, error from journal_messages where status in ('failed', 'unrouted')"
            )
        ).all()
    assert not bad, bad
