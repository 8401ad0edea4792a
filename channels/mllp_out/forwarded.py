"""Which journal messages an `mllp_out` destination has forwarded: once per message.

A message that maps to several records reaches the destination as several envelopes, maybe
in different partitions (a mother's and a child's record), maybe in different processes.
The first to get here claims the message (a row in the journal database, `sending`), sends
it and marks it `sent` with the receiver's ACK code; every other envelope of the message
then finds it sent and is delivered without sending. An envelope that finds a fresh claim
of another worker is retried later (by then the claim is settled). A failed send releases
the claim; a claim older than its lease (its worker died mid-send) is taken over, so the
message is sent again: at least once, and the receiver's MSH-10 check drops the copy.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Column, Engine, MetaData, PrimaryKeyConstraint, String, Table, delete, select, update
from sqlalchemy.exc import IntegrityError

from core.clock import now_utc
from core.database import RowId, UtcDateTime

__all__ = ["BUSY", "DONE", "MINE", "claim", "ensure_schema", "forwarded", "mark_sent", "release"]

metadata = MetaData()

forwarded = Table(
    "mllp_out_forwarded",
    metadata,
    Column("destination", String(64), nullable=False),
    Column("journal_id", RowId, nullable=False),
    Column("state", String(8), nullable=False),  # sending | sent
    Column("ack_code", String(2), nullable=False, default=""),
    Column("updated_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("destination", "journal_id"),
)

MINE = "mine"  # this worker sends the message
DONE = "done"  # the message was forwarded already
BUSY = "busy"  # another worker is sending it now

_SENDING = "sending"
_SENT = "sent"


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def claim(engine: Engine, destination: str, journal_id: int, lease: float) -> str:
    """MINE, DONE or BUSY for this message at this destination."""
    now = now_utc()
    key = {"destination": destination, "journal_id": journal_id}
    try:
        with engine.begin() as conn:
            conn.execute(forwarded.insert().values(**key, state=_SENDING, ack_code="", updated_at=now))
        return MINE
    except IntegrityError:
        pass
    where = (forwarded.c.destination == destination) & (forwarded.c.journal_id == journal_id)
    with engine.begin() as conn:
        row = conn.execute(select(forwarded.c.state, forwarded.c.updated_at).where(where)).first()
        if row is None:  # released meanwhile: the next try claims it
            return BUSY
        if row.state == _SENT:
            return DONE
        if _aware(row.updated_at) > now - timedelta(seconds=lease):
            return BUSY
        taken = conn.execute(
            update(forwarded)
            .where(where, forwarded.c.state == _SENDING, forwarded.c.updated_at == row.updated_at)
            .values(updated_at=now)
        )
        return MINE if taken.rowcount == 1 else BUSY


def mark_sent(engine: Engine, destination: str, journal_id: int, ack_code: str) -> None:
    where = (forwarded.c.destination == destination) & (forwarded.c.journal_id == journal_id)
    with engine.begin() as conn:
        conn.execute(
            update(forwarded).where(where).values(state=_SENT, ack_code=ack_code, updated_at=now_utc())
        )


def release(engine: Engine, destination: str, journal_id: int) -> None:
    """Forget a claim whose send failed, so the retry (or another record's envelope) sends."""
    where = (forwarded.c.destination == destination) & (forwarded.c.journal_id == journal_id)
    with engine.begin() as conn:
        conn.execute(delete(forwarded).where(where, forwarded.c.state == _SENDING))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=now_utc().tzinfo)
