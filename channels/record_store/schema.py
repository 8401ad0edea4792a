"""The record store's tables and the rules that turn a person reference into identifiers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, Column, Engine, Index, MetaData, String, Table, Text, UniqueConstraint

from core.database import RowId, UtcDateTime

Identifier = tuple[str, str, str]
"""(kind, system, value): one row of `person_identifiers` without its person."""

metadata = MetaData()

persons = Table(
    "persons",
    metadata,
    Column("person_key", String(300), primary_key=True),
    Column("name", Text),
    Column("sex", String(2)),
    Column("birth_date", String(10)),
    Column("id_card", String(32)),
    Column("mother_key", String(300)),
    Column("merged_into", String(300)),
    Column("payload", JSON, nullable=False),
    Column("source_channel", String(64)),
    Column("source_control_id", String(200)),
    Column("journal_id", RowId),
    Column("event_time", UtcDateTime()),
    Column("stored_at", UtcDateTime(), nullable=False),
)
Index("ix_persons_id_card", persons.c.id_card)
Index("ix_persons_mother", persons.c.mother_key)

person_identifiers = Table(
    "person_identifiers",
    metadata,
    Column("kind", String(20), nullable=False),  # id_card, his, mch_handbook, birth_certificate
    Column("system", String(100), nullable=False, default=""),
    Column("value", String(100), nullable=False),
    Column("person_key", String(300), nullable=False),
    UniqueConstraint("kind", "system", "value", name="uq_person_identifier"),
)
Index("ix_person_identifiers_person", person_identifiers.c.person_key)

records = Table(
    "records",
    metadata,
    Column("record_id", String(300), primary_key=True),
    Column("record_type", String(40), nullable=False),
    Column("person_key", String(300)),
    Column("payload", JSON, nullable=False),
    Column("source_channel", String(64), nullable=False),
    Column("source_control_id", String(200)),
    Column("journal_id", RowId),
    Column("event_time", UtcDateTime()),
    Column("stored_at", UtcDateTime(), nullable=False),
)
Index("ix_records_person", records.c.person_key, records.c.event_time)
Index("ix_records_type", records.c.record_type)

derived_outbox = Table(
    "derived_outbox",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("record_id", String(300), nullable=False),
    Column("record_type", String(40), nullable=False),
    Column("person_key", String(300)),
    Column("payload", JSON, nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    # Never reuse an id of a deleted row (SQLite would, once the table is empty): the id is the
    # relayed message's control id, and the same id with the same bytes is a duplicate.
    sqlite_autoincrement=True,
)
"""Derived records new or changed, written with them when the store publishes them
(`publish_derived: true`); a `derived` channel journals them in id order and deletes them."""

# Identifier kinds, strongest first, and the PersonRef keys they come from.
IDENTIFIER_KINDS = (
    ("id_card", "id_card", None),
    ("his", "his_id", "his_system"),
    ("mch_handbook", "mch_handbook_no", None),
    ("birth_certificate", "birth_certificate_no", None),
)


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def identifiers_of(ref: dict[str, Any] | None) -> list[Identifier]:
    """(kind, system, value) a person reference carries; an ID card flagged invalid is left out."""
    if not ref:
        return []
    out = []
    for kind, key, system_key in IDENTIFIER_KINDS:
        value = ref.get(key)
        if kind == "id_card":
            if ref.get("id_card_valid") is False:
                continue  # a flagged number must never join two people
            value = ref.get("id_card_for_linking") or value  # a 15-digit number, upgraded
        if not value:
            continue
        system = str(ref.get(system_key) or "") if system_key else ""
        out.append((kind, system, str(value)))
    return out


def person_key_for(identifiers: list[Identifier]) -> str:
    """A new person's key, from its strongest identifier (stable, so a re-drive agrees)."""
    kind, system, value = identifiers[0]
    return f"{kind}:{system}:{value}" if system else f"{kind}:{value}"
