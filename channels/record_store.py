"""Record store destination: canonical records into SQL tables, idempotently.

Supports SQLite (embedded default) and PostgreSQL. Settings (`routes.yaml`):

    destinations:
      record_store:
        type: record_store
        database: ${MCH_STORE_URL:-}   # empty: the engine database

Every record is upserted by its stable `record_id`, so a re-driven or replayed
message never makes a second row. An upsert carrying an older source event than
the stored one changes nothing (never older over newer; the journal id breaks
ties). `Person` records go to `persons`, every other type to `records`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    or_,
    select,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from engine.database import UtcDateTime
from engine.errors import PermanentDeliveryError, TransientDeliveryError
from engine.journal import now_utc
from engine.upsert import insert_for

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
    Column("payload", JSON, nullable=False),
    Column("source_channel", String(64), nullable=False),
    Column("source_control_id", String(200)),
    Column("journal_id", _Id),
    Column("event_time", UtcDateTime()),
    Column("stored_at", UtcDateTime(), nullable=False),
)
Index("ix_persons_id_card", persons.c.id_card)

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


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


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
                    self._upsert(conn, env)
        except IntegrityError as exc:
            raise PermanentDeliveryError(f"record store refused the record: {exc.orig}") from exc
        except DBAPIError as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise TransientDeliveryError(f"record store unavailable: {exc.orig}") from exc
            raise PermanentDeliveryError(f"record store error: {exc.orig}") from exc

    def _upsert(self, conn: Any, env: dict[str, Any]) -> None:
        record = env["record"]
        event_time = _parse_time(env.get("event_time"))
        common = {
            "payload": record,
            "source_channel": env["channel"],
            "source_control_id": env.get("control_id"),
            "journal_id": env["journal_id"],
            "event_time": event_time,
            "stored_at": now_utc(),
        }
        if env["record_type"] == "Person":
            table, key = persons, "person_key"
            row = {
                "person_key": env["person_key"],
                "name": record.get("name"),
                "sex": record.get("sex"),
                "birth_date": record.get("birth_date"),
                "id_card": record.get("id_card"),
                **common,
            }
        else:
            table, key = records, "record_id"
            row = {
                "record_id": env["record_id"],
                "record_type": env["record_type"],
                "person_key": env.get("person_key"),
                **common,
            }
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


def _parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None
