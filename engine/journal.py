"""The message journal: every received message, committed before it is acknowledged.

The journal is the engine's memory. A message is ACKed (AA/CA) only after its raw
bytes are committed here; from then on the journal row says where it is
(`received` → `routed` | `unrouted` | `failed`, and per destination in
`journal_deliveries`). Rejected input is kept too, with the reason.

Writes from many connections share commits (group commit): a writer thread takes
whatever is waiting, up to `max_batch`, and commits it in one transaction, so a
disk flush is paid per batch, not per message. The same channel + sender + control
id seen again with the same bytes is answered with the original ACK and counted, not
processed twice; with other bytes it is a new message, flagged `control_id_reused`.
A value the database refuses costs only its own message (see `Refused`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from functools import partial
from typing import Any, Protocol

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
    func,
    inspect,
    select,
    true,
    update,
)
from sqlalchemy.exc import DataError, IntegrityError
from sqlalchemy.schema import CreateColumn

from core.clock import now_utc
from core.database import RowId, UtcDateTime
from core.journal import (
    CONTROL_ID_CHARS,
    DELIVERED,
    MESSAGE_TYPE_CHARS,
    PENDING,
    RECEIVED,
    RETRYING,
    ROUTED,
    SENDER_CHARS,
    Accepted,
    Entry,
    Outcome,
    Refused,
    Sink,
    Written,
    content_hash,
)
from core.journal import DEAD as DEAD
from core.journal import FAILED as FAILED
from core.journal import REJECTED as REJECTED
from core.journal import UNROUTED as UNROUTED
from core.upsert import insert_for
from engine.batching import run_batches

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


def ensure_schema(engine: Engine) -> None:
    """Create the tables, or bring a journal written by an older version up to date."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns(messages.name)}
        if "control_id_reused" not in columns:
            column = CreateColumn(messages.c.control_id_reused).compile(dialect=conn.dialect)
            conn.exec_driver_sql(f"ALTER TABLE {messages.name} ADD COLUMN {column}")
            _add_content_to_keys(conn)
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


_Item = tuple[Entry, asyncio.AbstractEventLoop | None, Sink]


class JournalWriter:
    """Group-commits entries from any thread, without waiting for more than is queued.

    A lone message is committed at once; while a commit is in flight the next ones queue
    up and share the following commit, so batches grow with the load by themselves.
    `max_wait` (seconds) optionally lingers for more after the first of a batch.

    `submit` returns a Future. `submit_to` hands the outcome to a callback on an event
    loop instead: a commit then wakes each loop once for all of its entries, which is
    what keeps a busy MLLP listener from paying a loop wake-up per message.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 500,
        max_wait: float = 0.0,
        on_accepted: Callable[[list[Accepted]], None] | None = None,
    ) -> None:
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._on_accepted = on_accepted
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._store = _store_for(engine)
        self.commits = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, entry: Entry) -> Future[Written | Refused]:
        fut: Future[Written | Refused] = Future()
        self._queue.put((entry, None, partial(_settle, fut)))
        return fut

    def submit_to(self, entry: Entry, loop: asyncio.AbstractEventLoop, sink: Sink) -> None:
        """Journal `entry`; call `sink(outcome)` on `loop` once its commit is over."""
        self._queue.put((entry, loop, sink))

    def _run(self) -> None:
        try:
            run_batches(self._queue, self._write, self._max_batch, self._max_wait)
        finally:
            self._store.close()

    def _write(self, batch: list[_Item]) -> None:
        entries = [item[0] for item in batch]
        outcomes: Sequence[Outcome]
        accepted: list[Accepted]
        try:
            outcomes, accepted = self._store.commit(entries)
        except self._store.per_entry as exc:
            # Another ingest process took a control id between our look-up and insert, or
            # one value does not fit: write one by one so only that entry is affected.
            log.warning("journal_batch_retried_one_by_one", error=str(exc), batch=len(batch))
            outcomes, accepted = self._one_by_one(entries)
            self.commits += 1
        except Exception as exc:
            log.error("journal_write_failed", error=str(exc), batch=len(batch))
            outcomes, accepted = [exc] * len(batch), []
        else:
            self.commits += 1
        _hand_out(batch, outcomes)
        if accepted and self._on_accepted:
            self._on_accepted(accepted)

    def _one_by_one(self, entries: list[Entry]) -> tuple[list[Outcome], list[Accepted]]:
        outcomes: list[Outcome] = []
        accepted: list[Accepted] = []
        for entry in entries:
            try:
                r, a = self._store.commit([entry])
            except self._store.per_entry as exc:
                r, a = [self._refuse(entry, exc)], []
            except Exception as exc:
                r, a = [exc], []
            outcomes += r
            accepted += a
        return outcomes, accepted

    def _refuse(self, entry: Entry, exc: Exception) -> Outcome:
        """Keep a message whose values the database refused as `rejected`, without them.

        A database that is down fails with other errors, which stay AE (send again);
        this message would fail the same way each time it is sent, so it is refused.
        """
        reason = f"the journal cannot store this message's header values ({type(exc).__name__})"
        log.warning("journal_refused_message", channel=entry.channel, error=type(exc).__name__)
        try:
            (kept,), _ = self._store.commit([entry.storable(reason)])
        except Exception as again:
            return again
        if isinstance(kept, Written) and entry.status == RECEIVED:
            return Refused(kept.journal_id, reason)
        return kept


def _settle(fut: Future[Written | Refused], outcome: Outcome) -> None:
    if isinstance(outcome, Exception):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


def _hand_out(batch: list[_Item], outcomes: Sequence[Outcome]) -> None:
    """Outcomes to their submitters: one thread-safe call per event loop, not per entry."""
    per_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sink, Outcome]]] = {}
    for (_, loop, sink), outcome in zip(batch, outcomes, strict=True):
        if loop is None:
            _call_sinks([(sink, outcome)])
        elif loop in per_loop:
            per_loop[loop].append((sink, outcome))
        else:
            per_loop[loop] = [(sink, outcome)]
    for loop, calls in per_loop.items():
        try:
            loop.call_soon_threadsafe(_call_sinks, calls)
        except RuntimeError:
            log.warning("journal_outcome_undelivered", reason="event loop closed", messages=len(calls))


def _call_sinks(calls: list[tuple[Sink, Outcome]]) -> None:
    for sink, outcome in calls:
        try:
            sink(outcome)
        except Exception:
            log.exception("journal_outcome_callback_failed")


# --------------------------------------------------------------------- committing a batch


class _Statements(Protocol):
    """The statements a batch needs, on a connection the store prepared."""

    # False: look every control id up before inserting, and a key taken meanwhile is an
    # IntegrityError. True: the insert itself skips a taken key (reported as None).
    skips_taken_keys: bool

    def lookup(self, keys: list[str]) -> dict[str, tuple[int, str]]: ...

    def insert(
        self, entries: list[Entry], keys: list[str | None], reused: list[bool], now: datetime
    ) -> list[tuple[int, bool] | None]:
        """Row id and `control_id_reused` of each row written (None: key taken). `reused`
        says which entries reuse an id of this batch; the statements add earlier rows."""
        ...

    def add_duplicates(self, counts: dict[int, int], now: datetime) -> None: ...


def _commit(sql: _Statements, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
    """Journal a batch: known keys are duplicates, the rest inserted in order.

    A key seen twice within the batch is inserted once; the later copies are duplicates
    of the first and get its ACK, exactly as if they had come in a later batch. The same
    control id with other bytes is inserted, flagged as reused. Rejected entries are
    made storable first: a rejection must never fail on the value it rejects.
    """
    now = now_utc()
    entries = [e if e.status == RECEIVED else e.storable() for e in entries]
    keys = [e.dedup_key for e in entries]
    known: dict[str, tuple[int, str]] = {}
    if not sql.skips_taken_keys:
        wanted = list({k for k in keys if k})
        known = sql.lookup(wanted) if wanted else {}
    results: list[Outcome | None] = [None] * len(entries)
    first_in_batch: set[str] = set()
    ids_in_batch: set[tuple[str, str, str]] = set()
    fresh: list[int] = []
    reused: list[bool] = []
    repeats: list[int] = []  # entries answered with an earlier message's row and ACK
    for i, key in enumerate(keys):
        again = False
        if key:
            if key in known or key in first_in_batch:
                repeats.append(i)
                continue
            first_in_batch.add(key)
            sent_as = entries[i].sent_as
            again = sent_as in ids_in_batch
            ids_in_batch.add(sent_as)
        fresh.append(i)
        reused.append(again)
    accepted: list[Accepted] = []
    if fresh:
        rows = sql.insert([entries[i] for i in fresh], [keys[i] for i in fresh], reused, now)
        taken: list[str] = []
        for i, row in zip(fresh, rows, strict=True):
            e, key = entries[i], keys[i]
            if row is None:
                assert key is not None
                taken.append(key)
                repeats.append(i)
                continue
            jid, flagged = row
            results[i] = Written(jid, False, e.ack, flagged)
            if key:
                known[key] = (jid, e.ack)
            if e.status == RECEIVED:
                accepted.append(Accepted(jid, e.channel, e.raw, e.encoding))
        if taken:
            known.update(sql.lookup(taken))
    dup_counts: dict[int, int] = {}
    for i in repeats:
        original = known.get(keys[i] or "")
        if original is None:
            results[i] = LookupError("the journal skipped this control id as taken but has no row for it")
            continue
        results[i] = Written(original[0], True, original[1])
        dup_counts[original[0]] = dup_counts.get(original[0], 0) + 1
    if dup_counts:
        sql.add_duplicates(dup_counts, now)
    return results, accepted  # type: ignore[return-value]  # every slot is filled above


def _reused(
    entries: list[Entry], keys: list[str | None], reused: list[bool], earlier: set[tuple[str, str, str]]
) -> list[bool]:
    """Reused within the batch, or under an id an earlier accepted row has."""
    return [
        r or (k is not None and e.sent_as in earlier) for e, k, r in zip(entries, keys, reused, strict=True)
    ]


def _control_ids(entries: list[Entry], keys: list[str | None]) -> list[str]:
    """The control ids whose earlier rows decide `control_id_reused`."""
    return list({e.sent_as[2] for e, k in zip(entries, keys, strict=True) if k is not None})


def _row(e: Entry, key: str | None, reused: bool, now: datetime) -> dict[str, Any]:
    return {
        "channel": e.channel,
        "sender": e.sender[:SENDER_CHARS],
        "control_id": (e.control_id or None) and e.control_id[:CONTROL_ID_CHARS],
        "dedup_key": key,
        "message_type": e.message_type[:MESSAGE_TYPE_CHARS],
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
        "control_id_reused": reused,
    }


# The columns the hot insert fills, in this order; the table above stays the schema.
_INSERTED = (
    "channel",
    "sender",
    "control_id",
    "dedup_key",
    "message_type",
    "event_time",
    "received_at",
    "status",
    "error",
    "encoding",
    "raw",
    "ack",
    "ack_code",
    "peer",
)
assert all(name in messages.c for name in _INSERTED)


class _Store:
    """Commits batches.

    `per_entry` are the errors one entry can cause (a control id another process took
    meanwhile, a value the column refuses, a time Python cannot convert): the writer then
    retries the batch entry by entry, so only that entry is affected.
    """

    per_entry: tuple[type[Exception], ...] = (IntegrityError, DataError, OverflowError, ValueError)

    def commit(self, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
        raise NotImplementedError

    def close(self) -> None:
        """Give back what the store holds (called from the writer thread at its end)."""


def _store_for(engine: Engine) -> _Store:
    """Plain driver statements where we know the driver, SQLAlchemy Core elsewhere."""
    dialect = engine.dialect
    if dialect.name == "sqlite" and dialect.driver == "pysqlite":
        return _SqliteStore(engine)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return _PostgresStore(engine)
    return _CoreStore(engine)


class _CoreStore(_Store):
    """Any database SQLAlchemy speaks to."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def commit(self, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
        with self._engine.begin() as conn:
            return _commit(_CoreStatements(conn), entries)


class _CoreStatements:
    skips_taken_keys = False

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def lookup(self, keys: list[str]) -> dict[str, tuple[int, str]]:
        query = select(messages.c.dedup_key, messages.c.id, messages.c.ack).where(
            messages.c.dedup_key.in_(keys)
        )
        return {k: (i, a) for k, i, a in self._conn.execute(query)}

    def insert(
        self, entries: list[Entry], keys: list[str | None], reused: list[bool], now: datetime
    ) -> list[tuple[int, bool] | None]:
        cids = _control_ids(entries, keys)
        earlier: set[tuple[str, str, str]] = set()
        if cids:
            query = select(messages.c.channel, messages.c.sender, messages.c.control_id).where(
                messages.c.control_id.in_(cids) & messages.c.dedup_key.is_not(None)
            )
            earlier = {(c, s, i) for c, s, i in self._conn.execute(query)}
        flags = _reused(entries, keys, reused, earlier)
        rows = [_row(e, k, f, now) for e, k, f in zip(entries, keys, flags, strict=True)]
        stmt = messages.insert().returning(messages.c.id, sort_by_parameter_order=True)
        return [(jid, f) for (jid,), f in zip(self._conn.execute(stmt, rows), flags, strict=True)]

    def add_duplicates(self, counts: dict[int, int], now: datetime) -> None:
        for jid, n in counts.items():
            self._conn.execute(
                update(messages)
                .where(messages.c.id == jid)
                .values(duplicates=messages.c.duplicates + n, updated_at=now)
            )


class _DriverStore(_Store):
    """One pooled connection kept by the writer thread, spoken to through its driver.

    The hot insert skips SQL compilation; a failed commit gives the connection up
    (it may be broken: the database restarted) and the next batch takes a new one.
    """

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._pooled: Any = None
        dbapi = engine.dialect.loaded_dbapi
        self.per_entry = (*self.per_entry, dbapi.IntegrityError, dbapi.DataError)

    def commit(self, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
        if self._pooled is None:
            self._pooled = self._engine.raw_connection()
            self._prepare(self._pooled.driver_connection)
        conn = self._pooled.driver_connection
        try:
            cursor = conn.cursor()
            try:
                out = _commit(self._statements(conn, cursor), entries)
            finally:
                cursor.close()
            conn.commit()
        except BaseException as exc:
            if self._keeps_connection(exc):
                conn.rollback()
            else:
                self._drop()
            raise
        return out

    def _keeps_connection(self, exc: BaseException) -> bool:
        """Whether the connection is still good after `exc` (else it is given up)."""
        return isinstance(exc, self.per_entry)

    def _prepare(self, conn: Any) -> None:
        """Set up a connection taken from the pool."""

    def _release(self, conn: Any) -> None:
        """Undo `_prepare` before the connection goes back to the pool."""

    def _statements(self, conn: Any, cursor: Any) -> _Statements:
        raise NotImplementedError

    def _drop(self) -> None:
        pooled, self._pooled = self._pooled, None
        try:
            pooled.invalidate()
        except Exception as exc:
            log.warning("journal_connection_drop_failed", error=str(exc))

    def close(self) -> None:
        if self._pooled is not None:
            pooled, self._pooled = self._pooled, None
            try:
                self._release(pooled.driver_connection)
            finally:
                pooled.close()


_BUSY_CODES = frozenset({5, 6})  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)
_BUSY_LIMIT = 30.0  # seconds, as the engine's busy timeout for other connections


class _SqliteStore(_DriverStore):
    """SQLite through the `sqlite3` driver, waiting for the write lock itself.

    SQLite's own busy handler sleeps with a back-off that reaches 100 ms, so an ACK
    could wait that long after the transform or delivery workers let go of the lock.
    The writer's connection has no busy timeout instead and retries the (rolled back)
    batch within a few milliseconds, for at most as long as that timeout would wait.
    """

    def commit(self, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
        deadline = time.monotonic() + _BUSY_LIMIT
        pause = 0.0002
        while True:
            try:
                return super().commit(entries)
            except Exception as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(pause)
            pause = min(pause * 2, 0.002)

    def _prepare(self, conn: Any) -> None:
        conn.execute("PRAGMA busy_timeout = 0")

    def _release(self, conn: Any) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(_BUSY_LIMIT * 1000)}")

    def _keeps_connection(self, exc: BaseException) -> bool:
        return _busy(exc) or super()._keeps_connection(exc)

    def _statements(self, conn: Any, cursor: Any) -> _Statements:
        if conn.in_transaction:
            conn.rollback()
        # Take the write lock first: the look-up and the insert see the same journal.
        cursor.execute("BEGIN IMMEDIATE")
        return _SqliteStatements(cursor)


def _busy(exc: BaseException) -> bool:
    """Another connection holds the lock (sqlite3 errors carry the code since Python 3.11)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(code, int) and code & 0xFF in _BUSY_CODES


def sqlite_time(value: datetime) -> str:
    """An aware datetime as the journal's SQLite columns store it (UTC, as SQLAlchemy writes it)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


_SQLITE_COLUMNS = f"{', '.join(_INSERTED)}, control_id_reused, duplicates, updated_at"
_SQLITE_ROW = f"({', '.join('?' * len(_INSERTED))}, ?, 0, ?)"
_SQLITE_CHUNK = 1000  # rows per INSERT, well under SQLite's limit on bound variables


class _SqliteStatements:
    skips_taken_keys = False

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def lookup(self, keys: list[str]) -> dict[str, tuple[int, str]]:
        marks = ", ".join("?" * len(keys))
        rows = self._cursor.execute(
            f"SELECT dedup_key, id, ack FROM {messages.name} WHERE dedup_key IN ({marks})", keys
        )
        return {k: (i, a) for k, i, a in rows}

    def _earlier(self, cids: list[str]) -> set[tuple[str, str, str]]:
        """(channel, sender, control id) of accepted rows with one of these control ids."""
        if not cids:
            return set()
        marks = ", ".join("?" * len(cids))
        rows = self._cursor.execute(
            f"SELECT channel, sender, control_id FROM {messages.name} "
            f"WHERE control_id IN ({marks}) AND dedup_key IS NOT NULL",
            cids,
        )
        return {(c, s, i) for c, s, i in rows}

    def insert(
        self, entries: list[Entry], keys: list[str | None], reused: list[bool], now: datetime
    ) -> list[tuple[int, bool] | None]:
        stamp = sqlite_time(now)
        flags = _reused(entries, keys, reused, self._earlier(_control_ids(entries, keys)))
        ids: list[int] = []
        for start in range(0, len(entries), _SQLITE_CHUNK):
            end = start + _SQLITE_CHUNK
            chunk = entries[start:end]
            values: list[Any] = []
            for e, key, flag in zip(chunk, keys[start:end], flags[start:end], strict=True):
                values += (
                    e.channel,
                    e.sender[:SENDER_CHARS],
                    e.control_id[:CONTROL_ID_CHARS] if e.control_id else None,
                    key,
                    e.message_type[:MESSAGE_TYPE_CHARS],
                    sqlite_time(e.event_time) if e.event_time else None,
                    sqlite_time(e.received_at) if e.received_at else stamp,
                    e.status,
                    e.error,
                    e.encoding,
                    e.raw,
                    e.ack,
                    e.ack_code,
                    e.peer,
                    flag,
                    stamp,
                )
            # One statement for the chunk: the driver lets go of the GIL once, not once per
            # row. Rows without an explicit id get max(id) + 1 in VALUES order while we hold
            # the write lock, so the chunk's ids are the consecutive run ending at lastrowid.
            rows = ", ".join([_SQLITE_ROW] * len(chunk))
            self._cursor.execute(f"INSERT INTO {messages.name} ({_SQLITE_COLUMNS}) VALUES {rows}", values)
            if self._cursor.rowcount != len(chunk):
                raise RuntimeError(f"journal insert wrote {self._cursor.rowcount} rows of {len(chunk)}")
            last = self._cursor.lastrowid
            ids += range(last - len(chunk) + 1, last + 1)
        return list(zip(ids, flags, strict=True))

    def add_duplicates(self, counts: dict[int, int], now: datetime) -> None:
        stamp = sqlite_time(now)
        self._cursor.executemany(
            f"UPDATE {messages.name} SET duplicates = duplicates + ?, updated_at = ? WHERE id = ?",
            [(n, stamp, jid) for jid, n in counts.items()],
        )


# One statement whatever the batch size (so the server keeps it prepared). Rows are
# inserted in the order of the arrays, so the serial ids ascend in that order, the
# guarantee SQLAlchemy's own sorted RETURNING relies on for PostgreSQL. A key already
# journaled is skipped, not an error, so no look-up is needed beforehand; whether a row
# reuses an earlier accepted row's control id is decided in the same statement.
_PG_ARRAYS = {"raw": "bytea", "event_time": "timestamptz", "received_at": "timestamptz"}
_PG_INSERT = (
    f"INSERT INTO {messages.name} ({', '.join(_INSERTED)}, control_id_reused, duplicates, updated_at) "
    f"SELECT {', '.join(_INSERTED)}, t.reused OR (t.dedup_key IS NOT NULL AND EXISTS ("
    f"SELECT 1 FROM {messages.name} AS m WHERE m.control_id = t.control_id AND m.channel = t.channel "
    "AND m.sender = t.sender AND m.dedup_key IS NOT NULL)), 0, %s FROM unnest("
    + ", ".join(f"%s::{_PG_ARRAYS.get(c, 'text')}[]" for c in _INSERTED)
    + f", %s::boolean[]) WITH ORDINALITY AS t({', '.join(_INSERTED)}, reused, n) ORDER BY n"
    " ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key, control_id_reused"
)
_PG_LOOKUP = f"SELECT dedup_key, id, ack FROM {messages.name} WHERE dedup_key = ANY(%s::text[])"
_PG_DUPLICATES = (
    f"UPDATE {messages.name} AS m SET duplicates = m.duplicates + d.n, updated_at = %s "
    "FROM unnest(%s::bigint[], %s::int[]) AS d(id, n) WHERE m.id = d.id"
)


class _PostgresStore(_DriverStore):
    """Autocommit: the batch's one INSERT is its own transaction, durable when it returns.

    That makes a batch one round trip (no BEGIN, no COMMIT), each a point where the
    writer thread would wait for the GIL again. What follows the insert (looking up a
    control id journaled before, counting duplicates) cannot undo it: if it fails, only
    the duplicates are answered AE and the connection is given up afterwards.
    """

    _last: _PostgresStatements | None = None

    def commit(self, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
        self._last = None
        out = super().commit(entries)
        statements = self._last
        if statements is not None and statements.failed is not None:
            log.error("journal_duplicate_bookkeeping_failed", error=str(statements.failed))
            self._drop()
        return out

    def _prepare(self, conn: Any) -> None:
        conn.autocommit = True

    def _release(self, conn: Any) -> None:
        conn.autocommit = False

    def _statements(self, conn: Any, cursor: Any) -> _Statements:
        self._last = _PostgresStatements(cursor)
        return self._last


class _PostgresStatements:
    skips_taken_keys = True

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.failed: Exception | None = None

    def lookup(self, keys: list[str]) -> dict[str, tuple[int, str]]:
        # Only after the insert, which is committed: a failure here must not hide it.
        try:
            self._cursor.execute(_PG_LOOKUP, (keys,))
            return {k: (i, a) for k, i, a in self._cursor.fetchall()}
        except Exception as exc:
            self.failed = exc
            return {}

    def insert(
        self, entries: list[Entry], keys: list[str | None], reused: list[bool], now: datetime
    ) -> list[tuple[int, bool] | None]:
        rows = [
            (
                e.channel,
                e.sender[:SENDER_CHARS],
                e.control_id[:CONTROL_ID_CHARS] if e.control_id else None,
                key,
                e.message_type[:MESSAGE_TYPE_CHARS],
                e.event_time,
                e.received_at or now,
                e.status,
                e.error,
                e.encoding,
                e.raw,
                e.ack,
                e.ack_code,
                e.peer,
            )
            for e, key in zip(entries, keys, strict=True)
        ]
        columns = [list(column) for column in zip(*rows, strict=True)]
        self._cursor.execute(_PG_INSERT, (now, *columns, reused))
        written = sorted(self._cursor.fetchall())
        inserted_keys = {key for _, key, _ in written if key is not None}
        ids = iter((jid, flag) for jid, _, flag in written)
        # Rows without a key never clash; a keyed row missing from RETURNING was skipped.
        out = [next(ids) if key is None or key in inserted_keys else None for key in keys]
        if next(ids, None) is not None:
            raise RuntimeError("journal insert returned more rows than it was given")
        return out

    def add_duplicates(self, counts: dict[int, int], now: datetime) -> None:
        if self.failed is not None:
            return
        try:
            self._cursor.execute(_PG_DUPLICATES, (now, list(counts), list(counts.values())))
        except Exception as exc:
            self.failed = exc


def set_statuses(engine: Engine, updates: Iterable[tuple[int, str, str | None]]) -> None:
    """Record what the transform stage decided for each message, in one transaction."""
    with engine.begin() as conn:
        _set_statuses(conn, list(updates), now_utc())


def set_statuses_in(conn: Connection, updates: Iterable[tuple[int, str, str | None]]) -> None:
    """`set_statuses` inside the caller's transaction, so what goes with a status (a dead
    letter) commits with it or not at all."""
    _set_statuses(conn, list(updates), now_utc())


def _set_statuses(conn: Connection, updates: list[tuple[int, str, str | None]], now: datetime) -> None:
    """One UPDATE per distinct (status, error), not one per message: a batch of routed
    messages is a single `WHERE id IN (…)`."""
    groups: dict[tuple[str, str | None], list[int]] = {}
    for jid, status, error in updates:
        groups.setdefault((status, error), []).append(jid)
    for (status, error), ids in groups.items():
        for start in range(0, len(ids), 500):
            conn.execute(
                update(messages)
                .where(messages.c.id.in_(ids[start : start + 500]))
                .values(status=status, error=error, updated_at=now)
            )


def unfinished(
    engine: Engine,
    *,
    include_pending: bool,
    limit: int = 1000,
    after: int = 0,
    shard: tuple[int, int] | None = None,
) -> list[Accepted]:
    """Messages whose processing did not finish, oldest first; `shard=(i, n)` keeps those
    whose id modulo n is i (one of n transform processes)."""
    cond = messages.c.status == RECEIVED
    if include_pending:
        pending_ids = select(deliveries.c.journal_id).where(deliveries.c.status.in_((PENDING, RETRYING)))
        cond = cond | ((messages.c.status == ROUTED) & messages.c.id.in_(pending_ids))
    query = (
        select(messages.c.id, messages.c.channel, messages.c.raw, messages.c.encoding)
        .where(cond & (messages.c.id > after) & _in_shard(shard))
        .order_by(messages.c.id)
        .limit(limit)
    )
    with engine.connect() as conn:
        return [Accepted(i, c, r, enc) for i, c, r, enc in conn.execute(query)]


def _in_shard(shard: tuple[int, int] | None) -> Any:
    if shard is None or shard[1] <= 1:
        return true()
    return messages.c.id % shard[1] == shard[0]


def count_by_status(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(messages.c.status, func.count()).group_by(messages.c.status))
        return {s: n for s, n in rows}


def count_reused_by_channel(engine: Engine) -> dict[str, int]:
    """Messages per channel that came under a control id their sender had used before:
    a HIS whose counter was reset, or corrected resends, for the monitors to watch."""
    with engine.connect() as conn:
        query = (
            select(messages.c.channel, func.count())
            .where(messages.c.control_id_reused == true())
            .group_by(messages.c.channel)
        )
        return {c: n for c, n in conn.execute(query)}


def record_routed(engine: Engine, done: Iterable[tuple[int, str, list[tuple[str, str]]]]) -> None:
    """Set each message's status and add its pending deliveries, in one transaction.

    A delivery a fast consumer already marked `delivered` stays delivered.
    """
    now = now_utc()
    done = list(done)
    pending = [
        {
            "journal_id": jid,
            "destination": dest,
            "record_id": rid,
            "status": PENDING,
            "attempts": 0,
            "updated_at": now,
        }
        for jid, _, targets in done
        for dest, rid in targets
    ]
    with engine.begin() as conn:
        _set_statuses(conn, [(jid, status, None) for jid, status, _ in done], now)
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


def reopen_deliveries(engine: Engine, keys: Iterable[tuple[int, str, str]]) -> None:
    """Deliveries an operator sends again (replay, reprocess) are `pending` until their new
    outcome is known, so whoever waits for that outcome sees it change. Set before publishing:
    a fast consumer's `delivered` must come after, never be overwritten by it."""
    keys = list(keys)
    if not keys:
        return
    d = deliveries.c
    with engine.begin() as conn:
        for jid, dest, rid in keys:
            conn.execute(
                update(deliveries)
                .where((d.journal_id == jid) & (d.destination == dest) & (d.record_id == rid))
                .values(status=PENDING, updated_at=now_utc())
            )


def delivery_statuses(
    engine: Engine, keys: Iterable[tuple[int, str, str]]
) -> dict[tuple[int, str, str], str]:
    """The status of each (journal id, destination, record id) delivery that has a row."""
    wanted = {(int(j), d, r) for j, d, r in keys}
    if not wanted:
        return {}
    c = deliveries.c
    with engine.connect() as conn:
        rows = conn.execute(
            select(c.journal_id, c.destination, c.record_id, c.status).where(
                c.journal_id.in_(sorted({j for j, _, _ in wanted}))
            )
        )
        found = {(int(j), d, r): s for j, d, r, s in rows}
    return {k: v for k, v in found.items() if k in wanted}
