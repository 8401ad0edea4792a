"""The record store on SQLite and PostgreSQL: idempotent upserts, newest wins, persons linked and merged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from channels.record_store.queries import resolve_person, timeline
from channels.record_store.store import RecordStore, ensure_schema
from core.database import make_engine
from support import REPO, pg_schema
from transforms.hl7v2 import Message
from transforms.mapping import load_mapping
from transforms.validate import canonical

MOTHER = {"id_card": "500112199403151525", "his_id": "0010023456", "his_system": "HIS", "name": "陈思雨"}


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RecordStore]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path}/store.db")
        ensure_schema(engine)
        yield RecordStore(engine)
        engine.dispose()
        return
    with pg_schema() as url:
        engine = make_engine(url)
        ensure_schema(engine)
        yield RecordStore(engine)
        engine.dispose()


def env(kind: str, record_id: str, record: dict[str, Any], *, at: str, journal_id: int = 1) -> dict[str, Any]:
    return {
        "journal_id": journal_id,
        "channel": "hospital",
        "control_id": f"C{journal_id}",
        "record_type": kind,
        "record_id": record_id,
        "event_time": at,
        "record": {"record_id": record_id, **record},
    }


def q(engine: Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def payload_of(engine: Engine, record_id: str) -> dict[str, Any]:
    value = q(engine, "select payload from records where record_id = :r", r=record_id)
    return value if isinstance(value, dict) else json.loads(value)


class TestUpserts:
    def test_same_record_twice_is_one_row(self, store: RecordStore) -> None:
        """A re-driven or replayed record updates its row instead of adding one."""
        e = env(
            "LabResult",
            "lab:1",
            {"person": MOTHER, "observations": [{"code": "HGB"}]},
            at="2024-03-21T11:00:00+08:00",
        )
        store.store([e])
        store.store([e])
        assert q(store.engine, "select count(*) from records") == 1

    def test_the_same_message_made_again_replaces_its_record_even_at_an_earlier_time(
        self, store: RecordStore
    ) -> None:
        """A reprocess with a fixed mapping corrects the record its message made, even when the fix
        moved the event time earlier; another, older message still never replaces it."""
        wrong = env(
            "LabResult", "lab:7", {"placer_order_id": "BLD01"}, at="2024-03-21T11:30:00+08:00", journal_id=7
        )
        fixed = env(
            "LabResult", "lab:7", {"placer_order_id": "JC1"}, at="2024-03-21T08:30:00+08:00", journal_id=7
        )
        older = env(
            "LabResult", "lab:7", {"placer_order_id": "OLD"}, at="2024-03-21T08:30:00+08:00", journal_id=6
        )
        store.store([wrong])
        store.store([fixed])
        store.store([older])
        assert payload_of(store.engine, "lab:7")["placer_order_id"] == "JC1"
        assert q(store.engine, "select journal_id from records where record_id = 'lab:7'") == 7

    def test_older_event_never_overwrites_newer(self, store: RecordStore) -> None:
        """A correction stored first is not undone by the original arriving late."""
        newer = env(
            "LabResult",
            "lab:1",
            {"person": MOTHER, "observations": [{"code": "GLU", "value": 8.2}]},
            at="2024-07-11T09:03:00+08:00",
            journal_id=2,
        )
        older = env(
            "LabResult",
            "lab:1",
            {"person": MOTHER, "observations": [{"code": "GLU", "value": 8.7}]},
            at="2024-07-10T11:42:00+08:00",
            journal_id=1,
        )
        store.store([newer])
        store.store([older])
        assert payload_of(store.engine, "lab:1")["observations"][0]["value"] == 8.2

    def test_same_event_time_later_journal_entry_wins(self, store: RecordStore) -> None:
        """With equal event times the later journal entry (the later arrival) wins."""
        first = env(
            "LabResult",
            "lab:1",
            {"person": MOTHER, "observations": [{"v": 1}]},
            at="2024-07-10T11:42:00+08:00",
            journal_id=5,
        )
        second = env(
            "LabResult",
            "lab:1",
            {"person": MOTHER, "observations": [{"v": 2}]},
            at="2024-07-10T11:42:00+08:00",
            journal_id=6,
        )
        store.store([first, second])
        store.store([first])
        assert payload_of(store.engine, "lab:1")["observations"][0]["v"] == 2


class TestPersons:
    def test_result_before_registration_links_to_the_same_person(self, store: RecordStore) -> None:
        """A lab result naming only the HIS id, then the registration with ID card and HIS id: one person."""
        lab_ref = {"his_id": "0010023456", "his_system": "HIS", "name": "陈思雨"}
        store.store(
            [
                env(
                    "LabResult",
                    "lab:1",
                    {"person": lab_ref, "observations": []},
                    at="2024-03-21T11:00:00+08:00",
                )
            ]
        )
        store.store(
            [
                env(
                    "Person",
                    "person:HIS:0010023456",
                    {"person": MOTHER},
                    at="2024-03-21T08:32:00+08:00",
                    journal_id=2,
                )
            ]
        )
        key = resolve_person(store.engine, "500112199403151525")
        assert key is not None
        assert resolve_person(store.engine, "0010023456") == key
        assert q(store.engine, "select person_key from records where record_id = 'lab:1'") == key
        assert q(store.engine, "select count(*) from persons where merged_into is null") == 1

    def test_two_known_persons_shown_to_be_one_are_merged(self, store: RecordStore) -> None:
        """A PACS report by ID card and a LIS result by HIS id, then one message with both: one person."""
        store.store(
            [
                env(
                    "ImagingReport",
                    "us:1",
                    {"person": {"id_card": MOTHER["id_card"]}},
                    at="2024-04-05T10:00:00+08:00",
                )
            ]
        )
        store.store(
            [
                env(
                    "LabResult",
                    "lab:1",
                    {"person": {"his_id": "0010023456", "his_system": "HIS"}},
                    at="2024-03-21T11:00:00+08:00",
                    journal_id=2,
                )
            ]
        )
        assert resolve_person(store.engine, MOTHER["id_card"]) != resolve_person(store.engine, "0010023456")
        store.store(
            [
                env(
                    "Person",
                    "person:HIS:0010023456",
                    {"person": MOTHER},
                    at="2024-05-01T08:00:00+08:00",
                    journal_id=3,
                )
            ]
        )
        key = resolve_person(store.engine, MOTHER["id_card"])
        assert resolve_person(store.engine, "0010023456") == key
        assert q(store.engine, "select count(distinct person_key) from records") == 1

    def test_flagged_id_card_never_links(self, store: RecordStore) -> None:
        """Two people whose refs share an ID card marked invalid stay two people."""
        bad = {"id_card": "500112199210052283", "id_card_valid": False}
        store.store(
            [
                env(
                    "Person",
                    "p:1",
                    {"person": {**bad, "his_id": "1", "his_system": "HIS", "name": "甲"}},
                    at="2024-01-01T00:00:00+08:00",
                )
            ]
        )
        store.store(
            [
                env(
                    "Person",
                    "p:2",
                    {"person": {**bad, "his_id": "2", "his_system": "HIS", "name": "乙"}},
                    at="2024-01-01T00:00:00+08:00",
                    journal_id=2,
                )
            ]
        )
        assert q(store.engine, "select count(*) from persons") == 2

    def test_a40_merge_moves_records_and_identifiers(self, store: RecordStore) -> None:
        """After a PersonMerge the retired HIS id and its records belong to the survivor."""
        store.store(
            [
                env(
                    "LabResult",
                    "lab:old",
                    {"person": {"his_id": "0010025555", "his_system": "HIS"}},
                    at="2024-09-01T10:00:00+08:00",
                )
            ]
        )
        store.store(
            [
                env(
                    "Person",
                    "person:HIS:0010023333",
                    {
                        "person": {
                            "his_id": "0010023333",
                            "his_system": "HIS",
                            "id_card": "50011219950220168X",
                        }
                    },
                    at="2024-09-02T10:00:00+08:00",
                    journal_id=2,
                )
            ]
        )
        merge = {
            "survivor": {"his_id": "0010023333", "his_system": "HIS"},
            "retired": [{"his_id": "0010025555", "his_system": "HIS"}],
        }
        store.store([env("PersonMerge", "merge:1", merge, at="2024-09-18T11:20:00+08:00", journal_id=3)])
        survivor = resolve_person(store.engine, "50011219950220168X")
        assert resolve_person(store.engine, "0010025555") == survivor
        assert q(store.engine, "select person_key from records where record_id = 'lab:old'") == survivor

    def test_shipped_a40_mapping_retires_a_duplicate_known_by_its_handbook_number(
        self, store: RecordStore
    ) -> None:
        """MRG-1 listing a HIS id and a 母子健康手册号: records filed under either end with the survivor."""
        store.store(
            [
                env("LabResult", "lab:by-handbook", {"person": {"mch_handbook_no": "FY2024000399"}},
                    at="2024-10-10T10:00:00+08:00"),
                env("LabResult", "lab:by-his", {"person": {"his_id": "0010031299", "his_system": "HIS"}},
                    at="2024-10-10T11:00:00+08:00", journal_id=2),
            ]
        )  # fmt: skip
        a40 = "\r".join(
            [
                "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20241012093000||ADT^A40^ADT_A39|A40-1|P|2.5",
                "EVN|A40|20241012092900",
                "PID|1||0010031207^^^HIS^PI~500112202410080264^^^^ID||李沐瑶||20241008|F",
                "MRG|0010031299^^^HIS^PI~FY2024000399^^^^MCH",
            ]
        )
        mapping = load_mapping(REPO / "mappings/his/adt_a40_merge.yaml")
        store.store(
            [
                env(r.record_type, r.record_id, canonical(r.record_type, r.record_id, r.record),
                    at=str(r.event_time), journal_id=3 + i)
                for i, r in enumerate(mapping.apply(Message(a40)))
            ]
        )  # fmt: skip
        survivor = resolve_person(store.engine, "500112202410080264")
        assert survivor is not None
        assert resolve_person(store.engine, "FY2024000399") == survivor
        assert resolve_person(store.engine, "0010031299") == survivor
        owners = "select distinct person_key from records where record_id like 'lab:by-%'"
        with store.engine.connect() as conn:
            assert [row[0] for row in conn.execute(text(owners))] == [survivor]

    def test_newborn_links_to_mother_and_shows_in_her_timeline(self, store: RecordStore) -> None:
        """A newborn record naming the mother links the child; the mother's timeline lists both in time order."""
        store.store(
            [env("Person", "person:HIS:0010023456", {"person": MOTHER}, at="2024-03-21T08:32:00+08:00")]
        )
        store.store(
            [env("DeliveryRecord", "del:1", {"person": MOTHER}, at="2024-10-08T14:32:00+08:00", journal_id=2)]
        )
        baby = {"his_id": "0010031207", "his_system": "HIS", "name": "陈思雨之女"}
        store.store(
            [
                env(
                    "NewbornRecord",
                    "nb:1",
                    {"person": baby, "mother": MOTHER},
                    at="2024-10-08T16:00:00+08:00",
                    journal_id=3,
                )
            ]
        )
        mother = resolve_person(store.engine, MOTHER["id_card"])
        child = resolve_person(store.engine, "0010031207")
        assert q(store.engine, "select mother_key from persons where person_key = :k", k=child) == mother
        items = timeline(store.engine, mother)
        assert [i["record_type"] for i in items] == ["DeliveryRecord", "NewbornRecord"]
        assert items[1]["is_child"] and items[1]["stage"] == "child"
