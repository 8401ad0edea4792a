"""The message journal: every received message, committed before it is acknowledged.

The journal is the engine's memory. A message is ACKed (AA/CA) only after its raw
bytes are committed here; from then on the journal row says where it is
(`received` → `routed` | `unrouted` | `failed`, and per destination in
`journal_deliveries`). Rejected input is kept too, with the reason.

Writes from many connections share commits (group commit): a writer thread takes
whatever is waiting, up to `max_batch`, and commits it in one transaction, so a
disk flush is paid per batch, not per message. The same channel + sender + control
id seen again is answered with the original ACK and counted, not processed twice.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import (
    BigInteger,
    Column,
    Engine,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    func,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from engine.batching import run_batches
from engine.database import UtcDateTime
from engine.upsert import insert_for

log = structlog.get_logger("engine.journal")

metadata = MetaData()

_Id = BigInteger().with_variant(Integer, "sqlite")

messages = Table(
    "journal_messages",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("channel", String(64), nullable=False),
    Column("sender", String(200), nullable=False, default=""),
    Column("control_id", String(200)),
    Column("dedup_key", String(600), unique=True),
    Column("message_type", String(60), nullable=False, default=""),
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
)
Index("ix_journal_status", messages.c.status, messages.c.id)
Index("ix_journal_channel", messages.c.channel, messages.c.id)

deliveries = Table(
    "journal_deliveries",
    metadata,
    Column("journal_id", _Id, nullable=False),
    Column("destination", String(64), nullable=False),
    Column("record_id", String(300), nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("updated_at", UtcDateTime(), nullable=False),
    PrimaryKeyConstraint("journal_id", "destination", "record_id"),
)
Index("ix_deliveries_status", deliveries.c.status)

# Journal statuses.
RECEIVED = "received"
REJECTED = "rejected"
ROUTED = "routed"
UNROUTED = "unrouted"
FAILED = "failed"
DELIVERED = "delivered"
PENDING = "pending"
RETRYING = "retrying"  # waiting in a delayed-retry tier
DEAD = "dead"  # in dead letters; only an operator's replay moves it on


def now_utc() -> datetime:
    return datetime.now(UTC)


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


@dataclass(slots=True)
class Entry:
    """One received message as the MLLP source hands it to the journal."""

    channel: str
    raw: bytes
    status: str  # RECEIVED or REJECTED
    ack: str
    ack_code: str
    sender: str = ""
    control_id: str | None = None
    message_type: str = ""
    event_time: datetime | None = None
    encoding: str = ""
    error: str | None = None
    peer: str = ""
    received_at: datetime | None = None

    @property
    def dedup_key(self) -> str | None:
        if self.status != RECEIVED or not self.control_id:
            return None
        return f"{self.channel}|{self.sender}|{self.control_id}"


@dataclass(frozen=True, slots=True)
class Written:
    """What the journal did with an entry: its row id, and the ACK to send."""

    journal_id: int
    duplicate: bool
    ack: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """A newly journaled message the transform stage must process."""

    journal_id: int
    channel: str
    raw: bytes
    encoding: str


class JournalWriter:
    """Group-commits entries from any thread; `submit` returns a Future of `Written`."""

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 500,
        max_wait: float = 0.002,
        on_accepted: Callable[[list[Accepted]], None] | None = None,
    ) -> None:
        self._engine = engine
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._on_accepted = on_accepted
        self._queue: queue.SimpleQueue[tuple[Entry, Future[Written]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self.commits = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, entry: Entry) -> Future[Written]:
        fut: Future[Written] = Future()
        self._queue.put((entry, fut))
        return fut

    def _run(self) -> None:
        run_batches(self._queue, self._write, self._max_batch, self._max_wait)

    def _write(self, batch: list[tuple[Entry, Future[Written]]]) -> None:
        try:
            results, accepted = _commit(self._engine, [e for e, _ in batch])
        except IntegrityError:
            # Another ingest process took a control id between our look-up and insert:
            # write one by one so only the clashing entry is treated as a duplicate.
            results, accepted = [], []
            for entry, _ in batch:
                try:
                    r, a = _commit(self._engine, [entry])
                except Exception as exc:
                    r, a = [exc], []
                results += r
                accepted += a
        except Exception as exc:
            log.error("journal_write_failed", error=str(exc), batch=len(batch))
            for _, fut in batch:
                fut.set_exception(exc)
            return
        self.commits += 1
        for (_, fut), result in zip(batch, results, strict=True):
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
        if accepted and self._on_accepted:
            self._on_accepted(accepted)


def _commit(engine: Engine, entries: Sequence[Entry]) -> tuple[list[Any], list[Accepted]]:
    now = now_utc()
    keys = {e.dedup_key for e in entries if e.dedup_key}
    results: list[Any] = [None] * len(entries)
    accepted: list[Accepted] = []
    with engine.begin() as conn:
        known: dict[str, tuple[int, str]] = {}
        if keys:
            rows = conn.execute(
                select(messages.c.dedup_key, messages.c.id, messages.c.ack).where(
                    messages.c.dedup_key.in_(keys)
                )
            )
            known = {k: (i, a) for k, i, a in rows}
        new_rows: list[dict[str, Any]] = []
        new_index: list[int] = []
        seen_in_batch: dict[str, int] = {}
        dup_counts: dict[int, int] = {}
        for i, e in enumerate(entries):
            key = e.dedup_key
            if key and key in known:
                jid, ack = known[key]
                results[i] = Written(jid, True, ack)
                dup_counts[jid] = dup_counts.get(jid, 0) + 1
                continue
            if key and key in seen_in_batch:
                results[i] = ("dup-of", seen_in_batch[key])
                continue
            if key:
                seen_in_batch[key] = i
            new_rows.append(_row(e, key, now))
            new_index.append(i)
        if new_rows:
            inserted = conn.execute(
                messages.insert().returning(messages.c.id, sort_by_parameter_order=True),
                new_rows,
            ).all()
            for i, (jid,) in zip(new_index, inserted, strict=True):
                e = entries[i]
                results[i] = Written(jid, False, e.ack)
                if e.status == RECEIVED:
                    accepted.append(Accepted(jid, e.channel, e.raw, e.encoding))
        for i, r in enumerate(results):
            if isinstance(r, tuple):
                first: Written = results[r[1]]
                results[i] = Written(first.journal_id, True, first.ack)
                dup_counts[first.journal_id] = dup_counts.get(first.journal_id, 0) + 1
        for jid, n in dup_counts.items():
            conn.execute(
                update(messages)
                .where(messages.c.id == jid)
                .values(duplicates=messages.c.duplicates + n, updated_at=now)
            )
    return results, accepted


def _row(e: Entry, key: str | None, now: datetime) -> dict[str, Any]:
    return {
        "channel": e.channel,
        "sender": e.sender[:200],
        "control_id": (e.control_id or None) and e.control_id[:200],
        "dedup_key": key,
        "message_type": e.message_type[:60],
        "event_time": e.event_time,
        "received_at": e.received_at or now,
        "status": e.status,
        "error": e.error,
        "encoding": e.encoding,
        "raw": e.raw,
        "ack": e.ack,
        "ack_code": e.ack_code,
        "duplicates": 0,
        "peer": e.peer,
        "updated_at": now,
    }


def set_statuses(engine: Engine, updates: Iterable[tuple[int, str, str | None]]) -> None:
    """Record what the transform stage decided for each message, in one transaction."""
    now = now_utc()
    with engine.begin() as conn:
        for jid, status, error in updates:
            conn.execute(
                update(messages)
                .where(messages.c.id == jid)
                .values(status=status, error=error, updated_at=now)
            )


def unfinished(engine: Engine, *, include_pending: bool, limit: int = 1000, after: int = 0) -> list[Accepted]:
    """Messages whose processing did not finish, oldest first, for re-driving at start."""
    cond = messages.c.status == RECEIVED
    if include_pending:
        pending_ids = select(deliveries.c.journal_id).where(deliveries.c.status.in_((PENDING, RETRYING)))
        cond = cond | ((messages.c.status == ROUTED) & messages.c.id.in_(pending_ids))
    query = (
        select(messages.c.id, messages.c.channel, messages.c.raw, messages.c.encoding)
        .where(cond & (messages.c.id > after))
        .order_by(messages.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [Accepted(i, c, r, enc) for i, c, r, enc in conn.execute(query)]


def count_by_status(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status))
        return {s: n for s, n in rows}


def record_routed(engine: Engine, done: Iterable[tuple[int, str, list[tuple[str, str]]]]) -> None:
    """Set each message's status and add its pending deliveries, in one transaction.

    A delivery a fast consumer already marked `delivered` stays delivered.
    """
    now = now_utc()
    with engine.begin() as conn:
        pending: list[dict[str, Any]] = []
        for jid, status, targets in done:
            conn.execute(
                update(messages).where(messages.c.id == jid).values(status=status, error=None, updated_at=now)
            )
            pending += [
                {
                    "journal_id": jid,
                    "destination": dest,
                    "record_id": rid,
                    "status": PENDING,
                    "attempts": 0,
                    "updated_at": now,
                }
                for dest, rid in targets
            ]
        if pending:
            stmt = insert_for(conn, deliveries).on_conflict_do_nothing()
            conn.execute(stmt, pending)


def mark_delivered(engine: Engine, done: Iterable[tuple[int, str, str]], attempts: int = 1) -> None:
    """A destination committed these (journal id, destination, record id) deliveries."""
    now = now_utc()
    rows = [
        {
            "journal_id": jid,
            "destination": dest,
            "record_id": rid,
            "status": DELIVERED,
            "attempts": attempts,
            "updated_at": now,
        }
        for jid, dest, rid in done
    ]
    if not rows:
        return
    with engine.begin() as conn:
        stmt = insert_for(conn, deliveries)
        stmt = stmt.on_conflict_do_update(
            index_elements=["journal_id", "destination", "record_id"],
            set_={
                "status": DELIVERED,
                "attempts": func.max(deliveries.c.attempts, stmt.excluded.attempts)
                if conn.dialect.name == "sqlite"
                else func.greatest(deliveries.c.attempts, stmt.excluded.attempts),
                "updated_at": now,
            },
        )
        conn.execute(stmt, rows)


def mark_delivery_error(
    engine: Engine, jid: int, dest: str, rid: str, error: str, *, status: str = PENDING
) -> None:
    """Count a failed attempt and keep its reason, for `messages list` and the on-call."""
    now = now_utc()
    with engine.begin() as conn:
        stmt = insert_for(conn, deliveries).on_conflict_do_update(
            index_elements=["journal_id", "destination", "record_id"],
            set_={
                "status": status,
                "attempts": deliveries.c.attempts + 1,
                "last_error": error,
                "updated_at": now,
            },
        )
        conn.execute(
            stmt,
            {
                "journal_id": jid,
                "destination": dest,
                "record_id": rid,
                "status": status,
                "attempts": 1,
                "last_error": error,
                "updated_at": now,
            },
        )
