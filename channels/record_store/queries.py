"""Queries behind `mch-engine records list` and `person`: the record store's persons and
records, a person found by any identifier, and her timeline."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from channels.record_store.schema import person_identifiers, persons, records


def count_records(engine: Engine, *, record_type: str | None, person: str | None) -> int:
    """How many rows `list_records` would give without a limit."""
    total = 0
    with engine.connect() as conn:
        if record_type in (None, "Person"):
            q = select(func.count()).select_from(persons)
            if person:
                q = q.where(persons.c.person_key == person)
            total += int(conn.execute(q).scalar() or 0)
        if record_type != "Person":
            q = select(func.count()).select_from(records)
            if record_type:
                q = q.where(records.c.record_type == record_type)
            if person:
                q = q.where(records.c.person_key == person)
            total += int(conn.execute(q).scalar() or 0)
    return total


def list_records(
    engine: Engine, *, record_type: str | None, person: str | None, limit: int | None
) -> Iterator[dict[str, Any]]:
    """Persons (type Person) and other records, newest source event first."""
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        if record_type in (None, "Person"):
            q = select(persons).order_by(persons.c.stored_at.desc())
            if person:
                q = q.where(persons.c.person_key == person)
            for r in conn.execute(q.limit(limit) if limit else q):
                out.append(_stored(r, r.person_key, "Person"))
        if record_type != "Person":
            q = select(records).order_by(records.c.stored_at.desc())
            if record_type:
                q = q.where(records.c.record_type == record_type)
            if person:
                q = q.where(records.c.person_key == person)
            for r in conn.execute(q.limit(limit) if limit else q):
                out.append(_stored(r, r.record_id, r.record_type))
    for row in out[:limit] if limit else out:
        yield _jsonable(row)


def _stored(r: Any, record_id: str, record_type: str) -> dict[str, Any]:
    return {
        "record_id": record_id,
        "record_type": record_type,
        "person_key": r.person_key,
        "event_time": r.event_time,
        "source_channel": r.source_channel,
        "source_control_id": r.source_control_id,
        "journal_id": r.journal_id,
        "record": r.payload,
    }


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


STAGES = {
    "PremaritalExam": ("premarital", "婚前"),
    "PregnancyRegistration": ("pregnancy", "孕期"),
    "PrenatalVisit": ("pregnancy", "孕期"),
    "RiskAssessment": ("pregnancy", "孕期"),
    "PmtctCase": ("pregnancy", "孕期"),
    "DeliveryRecord": ("delivery", "分娩"),
    "NewbornRecord": ("child", "新生儿"),
    "NewbornScreening": ("child", "新生儿"),
    "PostpartumVisit": ("postpartum", "产后"),
    "ChildHealthExam": ("child", "儿童"),
    "LabResult": ("lab", "检验"),
    "ImagingReport": ("imaging", "检查"),
}


def records_of_message(engine: Engine, journal_id: int) -> list[dict[str, Any]]:
    """The records (and the person) a journaled message became, as `list_records` shows them."""
    out: list[dict[str, Any]] = []
    with engine.connect() as conn:
        for r in conn.execute(select(persons).where(persons.c.journal_id == journal_id)):
            out.append(_jsonable(_stored(r, r.person_key, "Person")))
        for r in conn.execute(select(records).where(records.c.journal_id == journal_id)):
            out.append(_jsonable(_stored(r, r.record_id, r.record_type)))
    return out


def journal_ids_of_person(engine: Engine, person_key: str) -> set[int]:
    """The journal ids of every message that became one of this person's records."""
    found: set[Any] = set()
    with engine.connect() as conn:
        for table in (records, persons):
            query = select(table.c.journal_id).where(table.c.person_key == person_key)
            found |= set(conn.execute(query).scalars())
    return {int(j) for j in found if j is not None}


def resolve_person(engine: Engine, ident: str) -> str | None:
    """A person key from a key, an ID card, a HIS id or any other identifier value."""
    with engine.connect() as conn:
        key = conn.execute(select(persons.c.person_key).where(persons.c.person_key == ident)).scalar()
        if key is None:
            key = conn.execute(
                select(person_identifiers.c.person_key).where(person_identifiers.c.value == ident)
            ).scalar()
        for _ in range(10):
            if key is None:
                return None
            nxt = conn.execute(select(persons.c.merged_into).where(persons.c.person_key == key)).scalar()
            if not nxt:
                return str(key)
            key = nxt
    return str(key)


def timeline(engine: Engine, person_key: str) -> list[dict[str, Any]]:
    """One person's records and her children's, oldest first: premarital → pregnancy →
    delivery → postpartum → child."""
    with engine.connect() as conn:
        people = {
            r.person_key: r.name
            for r in conn.execute(
                select(persons.c.person_key, persons.c.name).where(
                    (persons.c.person_key == person_key) | (persons.c.mother_key == person_key)
                )
            )
        }
        rows = conn.execute(
            select(records).where(records.c.person_key.in_(list(people))).order_by(records.c.event_time)
        ).all()
    out = []
    for r in rows:
        stage = STAGES.get(r.record_type, ("other", "其他"))
        if r.person_key != person_key:
            stage = ("child", "儿童")  # everything of a child's belongs to the child stage
        out.append(
            _jsonable(
                {
                    "event_time": r.event_time,
                    "stage": stage[0],
                    "record_type": r.record_type,
                    "record_id": r.record_id,
                    "person_key": r.person_key,
                    "person_name": people.get(r.person_key),
                    "is_child": r.person_key != person_key,
                    "source_channel": r.source_channel,
                    "record": r.payload,
                }
            )
        )
    out.sort(key=lambda x: (x["event_time"] is None, x["event_time"] or ""))
    return out
