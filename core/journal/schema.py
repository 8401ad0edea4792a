"""The journal's tables (`journal_messages`, `journal_deliveries`) and bringing a journal
written by an older version up to date. Here, below the engine, because the dead-letter
store joins them and the dead-letter actions move a message's status."""

from __future__ import annotations

import structlog
from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    bindparam,
    false,
    inspect,
    select,
    update,
)
from sqlalchemy.schema import CreateColumn

from core.database import RowId, UtcDateTime
from core.journal import CONTROL_ID_CHARS, MESSAGE_TYPE_CHARS, SENDER_CHARS, content_hash

log = structlog.get_logger("engine.journal")


metadata = MetaData()

messages = Table(
    "journal_messages",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("sender", String(SENDER_CHARS), nullable=False, default=""),
    Column("control_id", String(CONTROL_ID_CHARS)),
    # channel|sender|control id|sha256 of the raw bytes: the same id with the same bytes.
    Column("dedup_key", String(600), unique=True),
    Column("message_type", String(MESSAGE_TYPE_CHARS), nullable=False, default=""),
    Column("event_time", UtcDateTime()),
    Column("received_at", UtcDateTime(), nullable=False),
    Column("status", String(16), nullable=False),
    Column("error", Text),
    Column("encoding", String(32), nullable=False, default=""),
    Column("raw", LargeBinary, nullable=False),
    Column("ack", Text, nullable=False, default=""),
    Column("ack_code", String(2), nullable=False, default=""),
    Column("duplicates", Integer, nullable=False, default=0),
    Column("peer", String(80), nullable=False, default=""),
    Column("updated_at", UtcDateTime(), nullable=False),
    # An earlier message of the same channel + sender had this control id, with other bytes.
    Column("control_id_reused", Boolean, nullable=False, default=False, server_default=false()),
    # When the insert committed, which is when the ACK goes out: with `received_at` (the
    # frame's arrival) the ACK latency, at no extra write. Empty on rows older than it.
    Column("journaled_at", UtcDateTime()),
)
Index("ix_journal_status", messages.c.status, messages.c.id)
Index("ix_journal_channel", messages.c.channel, messages.c.id)
_by_control_id = Index("ix_journal_control_id", messages.c.control_id)

deliveries = Table(
    "journal_deliveries",
    metadata,
    Column("journal_id", RowId, nullable=False),
    Column("destination", String(64), nullable=False),
    Column("record_id", String(300), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("updated_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("journal_id", "destination", "record_id"),
)
Index("ix_deliveries_status", deliveries.c.status)

# Which routes took a message (written with its deliveries): per-route numbers for `status`.
routes_taken = Table(
    "journal_routes",
    metadata,
    Column("journal_id", RowId, nullable=False),
    Column("route", String(64), nullable=False),
    PrimaryKeyConstraint("journal_id", "route"),
)
Index("ix_journal_routes_route", routes_taken.c.route)


def ensure_schema(engine: Engine) -> None:
    """Create the tables, or bring a journal written by an older version up to date."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns(messages.name)}
        if "control_id_reused" not in columns:
            column = CreateColumn(messages.c.control_id_reused).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {messages.name} ADD COLUMN {column}")
            _add_content_to_keys(conn)
        if "journaled_at" not in columns:
            column = CreateColumn(messages.c.journaled_at).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {messages.name} ADD COLUMN {column}")
    _by_control_id.create(engine, checkfirst=True)


def _add_content_to_keys(conn: Connection) -> None:
    """Older journals keyed a message by its control id alone: add the content hash, so
    the same bytes sent again are still recognised as a duplicate after the upgrade."""
    last, rekeyed = 0, 0
    rekey = update(messages).where(messages.c.id == bindparam("jid")).values(dedup_key=bindparam("new_key"))
    while True:
        query = (
            select(messages.c.id, messages.c.dedup_key, messages.c.raw)
            .where(messages.c.dedup_key.is_not(None) & (messages.c.id > last))
            .order_by(messages.c.id)
            .limit(1000)
        )
        rows = conn.execute(query).all()
        if not rows:
            break
        conn.execute(rekey, [{"jid": i, "new_key": f"{k}|{content_hash(r)}"} for i, k, r in rows])
        last, rekeyed = rows[-1][0], rekeyed + len(rows)
    log.info("journal_upgraded", added="control_id_reused", rekeyed=rekeyed)
