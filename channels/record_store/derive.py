"""Derived records: what the clinical rules make of a person's records, stored beside them.

After a bundle is stored, and in the same transaction, every person one of its records
belongs to (and, for rules that follow infants, her mother) is read back whole and handed
to the rules; what they return replaces what they returned before. So a derived record is
never older than the records it was made from, a kill between the two cannot happen, and
the same records in any order give the same derived records. Derived rows carry the
channel `rules`; rows the rules no longer return are deleted.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from typing import Any

from sqlalchemy import Connection, Executable, and_, delete, select

from channels.record_store.schema import derived_outbox, persons, records
from core.clock import now_utc
from core.upsert import insert_for
from transforms.records.base import HOSPITAL_TZ
from transforms.rules.derivers import DERIVED_TYPES, Deriver, load_deriver
from transforms.rules.history import History, StoredRecord, as_date
from transforms.validate import canonical

__all__ = ["DERIVED_CHANNEL", "Derivations", "derivations_for", "event_time_of", "read_histories"]

DERIVED_CHANNEL = "rules"
_CHUNK = 300
_EVENT_DAY = {"RiskAssessment": "assessment_date", "PmtctCase": "opened_on"}


def derivations_for(destination: Any, settings: Any) -> Derivations:
    """The rule tables a record store destination lists, loaded."""
    derivers = [load_deriver(destination.file_path(p, settings)) for p in destination.rules]
    return Derivations(derivers, publish=destination.publish_derived)


class Derivations:
    """The store's derivers, and how to run them for the persons a bundle touched."""

    def __init__(self, derivers: Sequence[Deriver], *, publish: bool = False) -> None:
        self.derivers = list(derivers)
        self.publish = publish  # new or changed derived records also go to `derived_outbox`
        self.triggers = frozenset(t for d in self.derivers for t in d.triggers)
        self.writes = tuple(dict.fromkeys(t for d in self.derivers for t in d.writes))
        self._upsert: dict[str, Executable] = {}

    def __bool__(self) -> bool:
        return bool(self.derivers)

    def apply(self, conn: Connection, envelopes: Iterable[dict[str, Any]]) -> None:
        """Run the rules for every person a triggering record of `envelopes` belongs to."""
        ids = [
            env["record_id"]
            for env in envelopes
            if env["record_type"] in self.triggers and env.get("channel") != DERIVED_CHANNEL
        ]
        if not self.derivers or not ids:
            return
        keys = self._persons_of(conn, ids)
        today = now_utc().astimezone(HOSPITAL_TZ).date()
        for key, history in self._histories(conn, sorted(keys)).items():
            self._replace(conn, key, history, today)

    def _persons_of(self, conn: Connection, record_ids: list[str]) -> set[str]:
        keys: set[str] = set()
        for i in range(0, len(record_ids), _CHUNK):
            chunk = record_ids[i : i + _CHUNK]
            rows = conn.execute(
                select(records.c.person_key, persons.c.mother_key)
                .select_from(records.outerjoin(persons, persons.c.person_key == records.c.person_key))
                .where(records.c.record_id.in_(chunk), records.c.person_key.is_not(None))
            )
            for person_key, mother_key in rows:
                keys.add(person_key)
                if mother_key and any(d.mothers_too for d in self.derivers):
                    keys.add(mother_key)
        return keys

    def _histories(self, conn: Connection, keys: list[str]) -> dict[str, History]:
        return read_histories(conn, keys)

    def _replace(self, conn: Connection, key: str, history: History, today: Any) -> None:
        made: dict[str, dict[str, Any]] = {}
        for deriver in self.derivers:
            for payload in deriver.derive(history, today):
                made[payload["record_id"]] = _canonical(payload, today)
        before = {r.record_id: r.payload for r in history.records if _derived(r)}
        gone = [rid for rid in before if rid not in made]
        if gone:
            mine = and_(records.c.person_key == key, records.c.record_id.in_(gone))
            conn.execute(delete(records).where(mine))
        stored_at = now_utc()
        rows = [_row(key, record, stored_at) for rid, record in made.items() if before.get(rid) != record]
        if rows:
            conn.execute(self._upsert_for(conn), rows)
            if self.publish:
                conn.execute(derived_outbox.insert(), [_outbox_row(row) for row in rows])

    def _upsert_for(self, conn: Connection) -> Executable:
        """Insert or replace: a derived row is rewritten whole, whatever its event time."""
        found = self._upsert.get(conn.dialect.name)
        if found is None:
            stmt = insert_for(conn, records)
            columns = ("record_type", "person_key", "payload", "source_channel", "event_time", "stored_at")
            found = stmt.on_conflict_do_update(
                index_elements=["record_id"], set_={c: stmt.excluded[c] for c in columns}
            )
            self._upsert[conn.dialect.name] = found
        return found


def read_histories(conn: Connection, keys: list[str]) -> dict[str, History]:
    """Each person's row and records, and her children's, in as few reads as the chunks."""
    out: dict[str, History] = {}
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        children: dict[str, list[str]] = {}
        people: dict[str, dict[str, Any]] = {}
        p = persons.c
        wanted = select(p.person_key, p.mother_key, p.payload, p.birth_date).where(
            p.person_key.in_(chunk) | p.mother_key.in_(chunk)
        )
        for key, mother, payload, birth in conn.execute(wanted):
            people[key] = {**(payload or {}), "birth_date": (payload or {}).get("birth_date") or birth}
            if mother in chunk:
                children.setdefault(mother, []).append(key)
        stored = _records_of(conn, list(people))
        for key in chunk:
            kids = tuple(
                History(kid, people.get(kid, {}), tuple(stored.get(kid, ()))) for kid in children.get(key, [])
            )
            out[key] = History(key, people.get(key, {}), tuple(stored.get(key, ())), kids)
    return out


_CANONICAL: dict[str, dict[str, Any]] = {}
_CANONICAL_MAX = 20_000
_canonical_day: date | None = None


def _canonical(payload: dict[str, Any], today: date) -> dict[str, Any]:
    """The derived record as stored (validated by its model). A woman's gradings are made
    again with each of her records and are mostly the same: their validation is kept, for
    the day (a model checks dates against today)."""
    global _canonical_day
    if _canonical_day != today or len(_CANONICAL) >= _CANONICAL_MAX:
        _CANONICAL.clear()
        _canonical_day = today
    key = json.dumps(payload, sort_keys=True, default=str, ensure_ascii=False)
    found = _CANONICAL.get(key)
    if found is None:
        kind, rid = payload["record_type"], payload["record_id"]
        found = _CANONICAL[key] = canonical(kind, rid, payload, {"channel": DERIVED_CHANNEL})
    return found


def _derived(record: StoredRecord) -> bool:
    source = record.payload.get("source") or {}
    return record.record_type in DERIVED_TYPES and source.get("channel") == DERIVED_CHANNEL


def _records_of(conn: Connection, keys: list[str]) -> dict[str, list[StoredRecord]]:
    found: dict[str, list[StoredRecord]] = {}
    if not keys:
        return found
    rows = conn.execute(
        select(records.c.person_key, records.c.payload, records.c.event_time)
        .where(records.c.person_key.in_(keys))
        .order_by(records.c.event_time, records.c.journal_id, records.c.record_id)
    )
    for key, payload, event_time in rows:
        if isinstance(payload, dict) and payload.get("record_type") and payload.get("record_id"):
            found.setdefault(key, []).append(StoredRecord.of(payload, event_time))
    return found


def _outbox_row(row: dict[str, Any]) -> dict[str, Any]:
    """A stored derived row as the outbox keeps it, for the `derived` channel to relay."""
    return {
        "record_id": row["record_id"],
        "record_type": row["record_type"],
        "person_key": row["person_key"],
        "payload": row["payload"],
        "created_at": row["stored_at"],
    }


def event_time_of(record: dict[str, Any]) -> datetime | None:
    """A derived record's event time: the start of its day (graded, opened) in the hospital's zone."""
    day = as_date(record.get(_EVENT_DAY.get(record["record_type"], "")))
    return datetime.combine(day, time(0), tzinfo=HOSPITAL_TZ) if day else None


def _row(key: str, record: dict[str, Any], stored_at: datetime) -> dict[str, Any]:
    event_time = event_time_of(record)
    return {
        "record_id": record["record_id"],
        "record_type": record["record_type"],
        "person_key": key,
        "payload": record,
        "source_channel": DERIVED_CHANNEL,
        "source_control_id": None,
        "journal_id": None,
        "event_time": event_time,
        "stored_at": stored_at,
    }
