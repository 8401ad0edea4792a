"""Record store destination: canonical records into SQL tables, idempotently, linked to persons.

Supports SQLite (embedded default) and PostgreSQL. Settings (`routes.yaml`):

    destinations:
      record_store:
        type: record_store
        database: ${MCH_STORE_URL:-}   # empty: the engine database

Every record is upserted by its stable `record_id`, so a re-driven or replayed
message never makes a second row, and an upsert carrying an older source event
than the stored one changes nothing (never older over newer; the journal id
breaks ties).

Persons are found by their identifiers, strongest first: a valid 身份证号, then
the HIS patient id of the sending system, then the MCH handbook number, then the
birth certificate number. A record whose person is not known yet creates the
person, so results that arrive before the registration still link; when one
message shows two known persons to be the same, they are merged. An A40 merge
(`PersonMerge`) moves the retired identifiers and records to the survivor. A
newborn or child record links the child to its mother.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import structlog
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    and_,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from engine.database import UtcDateTime
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.journal import now_utc
from engine.upsert import insert_for

log = structlog.get_logger("channels.record_store")

metadata = MetaData()
_Id = BigInteger().with_variant(Integer, "sqlite")

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
    Column("journal_id", _Id),
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
    Column("journal_id", _Id),
    Column("event_time", UtcDateTime()),
    Column("stored_at", UtcDateTime(), nullable=False),
)
Index("ix_records_person", records.c.person_key, records.c.event_time)
Index("ix_records_type", records.c.record_type)

# Identifier kinds, strongest first, and the PersonRef keys they come from.
IDENTIFIER_KINDS = (
    ("id_card", "id_card", None),
    ("his", "his_id", "his_system"),
    ("mch_handbook", "mch_handbook_no", None),
    ("birth_certificate", "birth_certificate_no", None),
)


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def identifiers_of(ref: dict[str, Any] | None) -> list[tuple[str, str, str]]:
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


def person_key_for(identifiers: list[tuple[str, str, str]]) -> str:
    """A new person's key, from its strongest identifier (stable, so a re-drive agrees)."""
    kind, system, value = identifiers[0]
    return f"{kind}:{system}:{value}" if system else f"{kind}:{value}"


class RecordStore:
    """Upserts canonical record envelopes; one instance per consumer thread."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def health_check(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def store(self, envelopes: Iterable[dict[str, Any]]) -> None:
        """Commit a batch of envelopes in one transaction; map driver errors at the edge."""
        try:
            with self.engine.begin() as conn:
                for env in envelopes:
                    self._store_one(conn, env)
        except IntegrityError as exc:
            raise TransientDeliveryError(f"record store conflict, will retry: {exc.orig}") from exc
        except DBAPIError as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise TransientDeliveryError(f"record store unavailable: {exc.orig}") from exc
            raise PermanentDeliveryError(f"record store error: {exc.orig}") from exc

    # -- one envelope -----------------------------------------------------------------

    def _store_one(self, conn: Connection, env: dict[str, Any]) -> None:
        record = env["record"]
        kind = env["record_type"]
        if kind == "PersonMerge":
            self._merge(conn, record)
            return
        if kind == "Person":
            self._upsert_person(conn, env, record)
            return
        person_key = self._resolve(conn, record.get("person"), create=True)
        if record.get("mother") and person_key:
            mother_key = self._resolve(conn, record["mother"], create=True)
            if mother_key and mother_key != person_key:
                conn.execute(
                    update(persons).where(persons.c.person_key == person_key).values(mother_key=mother_key)
                )
        row = {
            "record_id": env["record_id"],
            "record_type": kind,
            "person_key": person_key,
            **_common(env),
        }
        _upsert_newest(conn, records, "record_id", row)

    def _upsert_person(self, conn: Connection, env: dict[str, Any], record: dict[str, Any]) -> None:
        ref = record.get("person") or record
        key = self._resolve(conn, ref, create=True) or f"record:{env['record_id']}"
        row = {
            "person_key": key,
            "name": ref.get("name"),
            "sex": ref.get("sex"),
            "birth_date": ref.get("birth_date"),
            "id_card": ref.get("id_card"),
            **_common(env),
        }
        _upsert_newest(conn, persons, "person_key", row)
        if record.get("mother"):
            mother_key = self._resolve(conn, record["mother"], create=True)
            if mother_key and mother_key != key:
                conn.execute(update(persons).where(persons.c.person_key == key).values(mother_key=mother_key))

    def _resolve(self, conn: Connection, ref: dict[str, Any] | None, *, create: bool) -> str | None:
        """The person these identifiers belong to; registers new identifiers; merges two
        known persons that this reference shows to be one."""
        ids = identifiers_of(ref)
        if not ids:
            return None
        found: list[str] = []
        for kind, system, value in ids:
            key = conn.execute(
                select(person_identifiers.c.person_key).where(
                    person_identifiers.c.kind == kind,
                    person_identifiers.c.system == system,
                    person_identifiers.c.value == value,
                )
            ).scalar()
            if key:
                key = _follow_merges(conn, key)
                if key not in found:
                    found.append(key)
        if found:
            survivor = found[0]
            for other in found[1:]:
                log.info("persons_linked", survivor=survivor, merged=other)
                _move_person(conn, other, survivor)
        elif create:
            survivor = person_key_for(ids)
            _insert_skeleton(conn, survivor, ref or {})
        else:
            return None
        for kind, system, value in ids:
            stmt = insert_for(conn, person_identifiers).on_conflict_do_nothing()
            conn.execute(stmt, {"kind": kind, "system": system, "value": value, "person_key": survivor})
        return survivor

    def _merge(self, conn: Connection, record: dict[str, Any]) -> None:
        """A40: the retired identifiers and everything filed under them go to the survivor."""
        survivor = self._resolve(conn, record.get("survivor"), create=True)
        if survivor is None:
            raise PermanentDeliveryError("PersonMerge without identifiers for the surviving person")
        for retired_ref in record.get("retired") or []:
            retired = self._resolve(conn, retired_ref, create=False)
            if retired and retired != survivor:
                _move_person(conn, retired, survivor)
            # The retired identifiers now name the survivor, known before or not, so a
            # message still filed under an old id links to the right person.
            for kind, system, value in identifiers_of(retired_ref):
                stmt = insert_for(conn, person_identifiers)
                stmt = stmt.on_conflict_do_update(
                    index_elements=["kind", "system", "value"], set_={"person_key": survivor}
                )
                conn.execute(stmt, {"kind": kind, "system": system, "value": value, "person_key": survivor})


def _common(env: dict[str, Any]) -> dict[str, Any]:
    return {
        "payload": env["record"],
        "source_channel": env["channel"],
        "source_control_id": env.get("control_id"),
        "journal_id": env["journal_id"],
        "event_time": _parse_time(env.get("event_time")),
        "stored_at": now_utc(),
    }


def _upsert_newest(conn: Connection, table: Table, key: str, row: dict[str, Any]) -> None:
    """Insert, or update when this source event is not older than the stored one."""
    stmt = insert_for(conn, table)
    newer = or_(
        table.c.event_time.is_(None),
        stmt.excluded.event_time > table.c.event_time,
        and_(
            stmt.excluded.event_time == table.c.event_time,
            stmt.excluded.journal_id >= table.c.journal_id,
        ),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[key],
        set_={c: stmt.excluded[c] for c in row if c != key},
        where=newer,
    )
    conn.execute(stmt, row)


def _insert_skeleton(conn: Connection, key: str, ref: dict[str, Any]) -> None:
    """A person known so far only from a record's reference; a registration fills it in."""
    stmt = insert_for(conn, persons).on_conflict_do_nothing()
    conn.execute(
        stmt,
        {
            "person_key": key,
            "name": ref.get("name"),
            "id_card": ref.get("id_card") if ref.get("id_card_valid") is not False else None,
            "payload": {},
            "stored_at": now_utc(),
        },
    )


def _follow_merges(conn: Connection, key: str) -> str:
    for _ in range(10):
        nxt = conn.execute(select(persons.c.merged_into).where(persons.c.person_key == key)).scalar()
        if not nxt:
            return key
        key = nxt
    return key


def _move_person(conn: Connection, retired: str, survivor: str) -> None:
    conn.execute(
        update(person_identifiers)
        .where(person_identifiers.c.person_key == retired)
        .values(person_key=survivor)
    )
    conn.execute(update(records).where(records.c.person_key == retired).values(person_key=survivor))
    conn.execute(update(persons).where(persons.c.mother_key == retired).values(mother_key=survivor))
    conn.execute(update(persons).where(persons.c.person_key == retired).values(merged_into=survivor))


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
