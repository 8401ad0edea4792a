"""Where each db_poll channel has read up to: (watermark, key) in the engine's database.

The row moves only inside the transaction that journals the rows read (`save_in`, called
by the journal writer's `commit_with`), so after a crash the cursor and the journal agree:
rows journaled are behind the cursor, rows not journaled are read again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from channels.db_poll.rows import dump_value, load_value
from core.database import UtcDateTime

metadata = MetaData()

cursors = Table(
    "db_poll_cursors",
    metadata,
    Column("channel", String(64), primary_key=True),
    Column("watermark", Text, nullable=False),  # rows.dump_value: type and value
    Column("row_key", Text, nullable=False),
    Column("rows", Integer, nullable=False, default=0),  # rows journaled through this cursor
    Column("moved_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True, slots=True)
class Cursor:
    """The last row journaled: its watermark and key, as the HIS gave them."""

    watermark: Any
    key: Any


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def load(engine: Engine, channel: str) -> Cursor | None:
    """The channel's cursor, or None before its first batch."""
    with engine.connect() as conn:
        row = conn.execute(
            select(cursors.c.watermark, cursors.c.row_key).where(cursors.c.channel == channel)
        ).first()
    return None if row is None else Cursor(load_value(row[0]), load_value(row[1]))


def save_in(conn: Connection, channel: str, cursor: Cursor, rows: int) -> None:
    """Move the cursor inside the caller's transaction (the one journaling those rows)."""
    values = {
        "watermark": dump_value(cursor.watermark),
        "row_key": dump_value(cursor.key),
        "moved_at": datetime.now(UTC),
    }
    moved = conn.execute(
        update(cursors).where(cursors.c.channel == channel).values(rows=cursors.c.rows + rows, **values)
    )
    if moved.rowcount == 0:
        conn.execute(insert(cursors).values(channel=channel, rows=rows, **values))
