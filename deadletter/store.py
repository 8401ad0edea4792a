"""The dead-letter store: messages the engine gave up on, kept until an operator acts.

A dead letter is one failure of one journaled message at one stage:

- `transform`: decoding, parsing, mapping or validation failed, so nothing was
  published; `destination` and `record_id` are empty and there is no payload.
- `deliver`: a destination refused the record for good, or every retry failed;
  the canonical envelope that was published is kept as `payload`, so it can be
  sent again unchanged.

The same failure dead-lettered again (a re-drive at start, a replay that failed
again) stays one row: its attempts grow, its reason and last failure time are
the newest, and a resolved row opens again. `delivery_attempts` keeps every
try, so `deadletter show` can tell the whole story. The tables live in the
journal database, beside `journal_messages`, which holds the raw bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
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
    exists,
    func,
    select,
    true,
    update,
)

from core.clock import now_utc
from core.database import RowId, UtcDateTime
from core.journal import FAILED
from core.journal.schema import messages
from core.upsert import insert_for

__all__ = [
    "DELIVER",
    "OPEN",
    "PURGED",
    "REPLAYED",
    "REPROCESSED",
    "STAGES",
    "STATUSES",
    "TRANSFORM",
    "add_dead_letter",
    "amend_attempt",
    "attempts",
    "dead_letters",
    "decode_for_display",
    "ensure_schema",
    "get_dead_letter",
    "get_many",
    "list_dead_letters",
    "load_raw",
    "metadata",
    "next_attempt",
    "note_failure",
    "put_dead_letter",
    "record_attempt",
    "recover_transform_failures",
    "resolve",
]

metadata = MetaData()


# Stages.
TRANSFORM = "transform"
DELIVER = "deliver"
STAGES = (TRANSFORM, DELIVER)

# Statuses: only `open` ones are acted on; the others are final until the failure recurs.
OPEN = "open"
REPLAYED = "replayed"
REPROCESSED = "reprocessed"
PURGED = "purged"
STATUSES = (OPEN, REPLAYED, REPROCESSED, PURGED)

dead_letters = Table(
    "dead_letters",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("stage", String(16), nullable=False),
    Column("channel", String(64), nullable=False),
    Column("route", String(64), nullable=False, default=""),
    # Empty (never NULL) for the transform stage: NULLs would defeat the unique key.
    Column("destination", String(64), nullable=False, default=""),
    Column("record_id", String(300), nullable=False, default=""),
    Column("journal_id", RowId, nullable=False),
    Column("reason", Text, nullable=False),
    Column("attempts", Integer, nullable=False, default=1),
    Column("first_failed_at", UtcDateTime(), nullable=False),
    Column("last_failed_at", UtcDateTime(), nullable=False),
    Column("payload", JSON(none_as_null=True), nullable=True),
    Column("status", String(16), nullable=False, default=OPEN),
    Column("resolved_at", UtcDateTime()),
    Column("resolved_by", String(128)),
    Column("resolution_note", Text),
    Column("created_at", UtcDateTime(), nullable=False),
    UniqueConstraint("journal_id", "stage", "destination", "record_id", name="uq_dead_letters_failure"),
)
Index("ix_dead_letters_status", dead_letters.c.status, dead_letters.c.id)
Index("ix_dead_letters_channel", dead_letters.c.channel, dead_letters.c.id)

attempts = Table(
    "delivery_attempts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("journal_id", RowId, nullable=False),
    Column("destination", String(64), nullable=False, default=""),
    Column("record_id", String(300), nullable=False, default=""),
    Column("attempt", Integer, nullable=False),
    Column("at", UtcDateTime(), nullable=False),
    Column("error", Text),
    Column("outcome", String(32), nullable=False),
)
Index("ix_delivery_attempts_key", attempts.c.journal_id, attempts.c.destination, attempts.c.record_id)

_KEY = ["journal_id", "stage", "destination", "record_id"]


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def add_dead_letter(engine: Engine, **failure: Any) -> int:
    """`put_dead_letter` in a transaction of its own; returns the dead letter's id."""
    with engine.begin() as conn:
        return put_dead_letter(conn, **failure)


def put_dead_letter(
    conn: Connection,
    *,
    stage: str,
    channel: str,
    route: str | None,
    destination: str | None,
    record_id: str | None,
    journal_id: int,
    reason: str,
    attempts: int,
    first_failed_at: datetime,
    payload: dict[str, Any] | None,
    failed_at: datetime | None = None,
) -> int:
    """Dead-letter a failure, or add to the one already kept for it, inside the caller's
    transaction (so a journal status and its dead letter commit together); returns its id.

    `attempts` counts the tries made since this failure was last dead-lettered, so a
    recurring failure adds up rather than resets. `failed_at` (default now) is the
    time of the last of them.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r} (expected one of {', '.join(STAGES)})")
    now = now_utc()
    last = failed_at or now
    row = {
        "stage": stage,
        "channel": channel,
        "route": route or "",
        "destination": destination or "",
        "record_id": record_id or "",
        "journal_id": journal_id,
        "reason": reason,
        "attempts": attempts,
        "first_failed_at": min(first_failed_at, last),
        "last_failed_at": last,
        "payload": payload,
        "status": OPEN,
        "created_at": now,
    }
    c = dead_letters.c
    stmt = insert_for(conn, dead_letters)
    new = stmt.excluded
    stmt = stmt.on_conflict_do_update(
        index_elements=_KEY,
        set_={
            "attempts": c.attempts + new.attempts,
            "last_failed_at": new.last_failed_at,
            "reason": new.reason,
            "channel": new.channel,
            "route": new.route,
            # A transform failure has no payload: keep the one we had.
            "payload": func.coalesce(new.payload, c.payload),
            "status": OPEN,
            "resolved_at": None,
            "resolved_by": None,
            "resolution_note": None,
        },
    ).returning(c.id)
    return int(conn.execute(stmt, row).scalar_one())


def recover_transform_failures(engine: Engine) -> int:
    """Dead-letter every `failed` message that no transform dead letter explains; returns how many.

    Before the transform stage saved a failure's status and its dead letter in one
    transaction, a kill -9 between the two left such a message, and nothing re-reads
    `failed` ones. Run at start, this makes them visible to the on-call again.
    """
    m, d = messages.c, dead_letters.c
    explained = exists().where((d.journal_id == m.id) & (d.stage == TRANSFORM))
    with engine.begin() as conn:
        lost = conn.execute(
            select(m.id, m.channel, m.error, m.updated_at).where((m.status == FAILED) & ~explained)
        ).all()
        for row in lost:
            put_dead_letter(
                conn,
                stage=TRANSFORM,
                channel=row.channel,
                route=None,
                destination=None,
                record_id=None,
                journal_id=row.id,
                reason=row.error or "transform failed",
                attempts=1,
                first_failed_at=row.updated_at,
                payload=None,
                failed_at=row.updated_at,
            )
    return len(lost)


def note_failure(engine: Engine, dead_letter_id: int, reason: str) -> None:
    """A retry of an existing dead letter failed again: count it, keep the newest reason."""
    c = dead_letters.c
    with engine.begin() as conn:
        conn.execute(
            update(dead_letters)
            .where(c.id == dead_letter_id)
            .values(
                attempts=c.attempts + 1,
                reason=reason,
                last_failed_at=now_utc(),
                status=OPEN,
                resolved_at=None,
                resolved_by=None,
                resolution_note=None,
            )
        )


def record_attempt(
    engine: Engine,
    *,
    journal_id: int,
    destination: str | None,
    record_id: str | None,
    attempt: int,
    error: str | None,
    outcome: str,
    at: datetime | None = None,
) -> int:
    """Keep one try (failed, retried, dead-lettered, replayed …) for `deadletter show`; its row id."""
    with engine.begin() as conn:
        return conn.execute(
            attempts.insert()
            .values(
                journal_id=journal_id,
                destination=destination or "",
                record_id=record_id or "",
                attempt=attempt,
                at=at or now_utc(),
                error=error,
                outcome=outcome,
            )
            .returning(attempts.c.id)
        ).scalar_one()


def amend_attempt(engine: Engine, attempt_id: int, outcome: str, error: str | None) -> None:
    """Correct the outcome of a try recorded before its result was known (a replay whose
    publish then failed): its number stays, so the numbers stay in order."""
    with engine.begin() as conn:
        conn.execute(update(attempts).where(attempts.c.id == attempt_id).values(outcome=outcome, error=error))


_LIST_COLUMNS = [col for col in dead_letters.c if col.name != "payload"]


def list_dead_letters(
    engine: Engine,
    *,
    channel: str | None = None,
    destination: str | None = None,
    reason: str | None = None,
    since: datetime | None = None,
    status: str | None = OPEN,
    stage: str | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Newest failure first, without payloads; `reason` matches any part, any case.

    `status=None` lists every status; `since` keeps those that last failed at or after it.
    """
    c = dead_letters.c
    query = select(*_LIST_COLUMNS).order_by(c.last_failed_at.desc(), c.id.desc())
    if channel:
        query = query.where(c.channel == channel)
    if destination:
        query = query.where(c.destination == destination)
    if reason:
        query = query.where(c.reason.icontains(reason, autoescape=True))
    if since is not None:
        query = query.where(c.last_failed_at >= since)
    if status:
        query = query.where(c.status == status)
    if stage:
        query = query.where(c.stage == stage)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def get_dead_letter(engine: Engine, dead_letter_id: int) -> dict[str, Any] | None:
    """One dead letter with its payload, its journaled message and every attempt.

    `message` holds the journal row with the raw bytes decoded as `text` (with the
    encoding the journal stored; an undecodable byte shows as U+FFFD here, never
    in what is replayed). The tries are under `attempt_log`, oldest first, since
    `attempts` is already the count.
    """
    with engine.connect() as conn:
        row = conn.execute(select(dead_letters).where(dead_letters.c.id == dead_letter_id)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        m = messages.c
        journaled = conn.execute(
            select(
                m.id, m.channel, m.sender, m.control_id, m.message_type, m.received_at,
                m.status, m.encoding, m.raw, m.error, m.ack_code,
            ).where(m.id == out["journal_id"])
        ).first()  # fmt: skip
        a = attempts.c
        tries = conn.execute(
            select(a.attempt, a.at, a.error, a.outcome)
            .where(
                (a.journal_id == out["journal_id"])
                & (a.destination == out["destination"])
                & (a.record_id == out["record_id"])
            )
            .order_by(a.at, a.id)
        )
        out["attempt_log"] = [dict(t._mapping) for t in tries]
    if journaled is None:
        out["message"] = None
    else:
        msg = dict(journaled._mapping)
        raw: bytes = msg.pop("raw")
        msg["text"] = decode_for_display(raw, msg["encoding"])
        msg["size"] = len(raw)
        out["message"] = msg
    return out


def decode_for_display(raw: bytes, encoding: str) -> str:
    """Text an operator can read, whatever the bytes: strict first, then with U+FFFD."""
    codec = encoding or "utf-8"
    try:
        return raw.decode(codec)
    except LookupError:
        codec = "utf-8"
    except UnicodeDecodeError:
        pass
    return raw.decode(codec, errors="replace")


def load_raw(engine: Engine, journal_id: int) -> tuple[str, bytes, str] | None:
    """(channel, raw bytes, encoding) of a journaled message, for reprocessing."""
    m = messages.c
    with engine.connect() as conn:
        row = conn.execute(select(m.channel, m.raw, m.encoding).where(m.id == journal_id)).first()
    return None if row is None else (row.channel, bytes(row.raw), row.encoding)


def get_many(engine: Engine, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
    """Dead letters by id, with payloads, for the actions."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    with engine.connect() as conn:
        rows = conn.execute(select(dead_letters).where(dead_letters.c.id.in_(wanted)))
        return {r.id: dict(r._mapping) for r in rows}


def next_attempt(engine: Engine, journal_id: int, destination: str, record_id: str) -> int:
    """The number the next try of this (message, destination, record) gets."""
    a = attempts.c
    with engine.connect() as conn:
        last = conn.execute(
            select(func.max(a.attempt)).where(
                (a.journal_id == journal_id) & (a.destination == destination) & (a.record_id == record_id)
            )
        ).scalar()
    return int(last or 0) + 1


def resolve(
    engine: Engine,
    ids: Iterable[int],
    status: str,
    actor: str,
    note: str | None,
    *,
    failed_at: datetime | None = None,
) -> list[int]:
    """Close open dead letters as replayed, reprocessed or purged; returns the ids it closed.

    Only `open` rows change, so two operators acting at once cannot close one twice. With
    `failed_at`, only a row whose last failure is still that one: a replay whose delivery
    already failed again (a fast consumer) stays open.
    """
    if status not in STATUSES or status == OPEN:
        raise ValueError(f"cannot resolve as {status!r} (expected replayed, reprocessed or purged)")
    wanted = sorted(set(ids))
    if not wanted:
        return []
    c = dead_letters.c
    with engine.begin() as conn:
        changed = conn.execute(
            update(dead_letters)
            .where(c.id.in_(wanted) & (c.status == OPEN))
            .where(c.last_failed_at == failed_at if failed_at is not None else true())
            .values(status=status, resolved_at=now_utc(), resolved_by=actor, resolution_note=note)
            .returning(c.id)
        )
        return sorted(int(i) for (i,) in changed)
