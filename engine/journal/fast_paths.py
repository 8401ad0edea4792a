"""Per-backend fast statement paths: plain driver statements on one kept connection for
SQLite (pysqlite) and PostgreSQL (psycopg), where SQLAlchemy Core's per-row work would be
most of a commit's cost; `store_for` picks the path for a database."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Engine

from core.journal import CONTROL_ID_CHARS, MESSAGE_TYPE_CHARS, SENDER_CHARS, Accepted, Entry, Outcome
from core.journal.schema import messages
from engine.journal.commit import (
    INSERTED,
    CoreStore,
    Statements,
    Store,
    commit_batch,
    control_ids,
    reused_flags,
)

log = structlog.get_logger("engine.journal")


class _DriverStore(Store):
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
                out = commit_batch(self._statements(conn, cursor), entries)
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

    def _statements(self, conn: Any, cursor: Any) -> Statements:
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


class SqliteStore(_DriverStore):
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

    def _statements(self, conn: Any, cursor: Any) -> Statements:
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


_SQLITE_COLUMNS = f"{', '.join(INSERTED)}, control_id_reused, duplicates, updated_at, journaled_at"
_SQLITE_ROW = f"({', '.join('?' * len(INSERTED))}, ?, 0, ?, ?)"
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
        flags = reused_flags(entries, keys, reused, self._earlier(control_ids(entries, keys)))
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
    f"INSERT INTO {messages.name} ({', '.join(INSERTED)}, control_id_reused, duplicates, updated_at, "
    "journaled_at) "
    f"SELECT {', '.join(INSERTED)}, t.reused OR (t.dedup_key IS NOT NULL AND EXISTS ("
    f"SELECT 1 FROM {messages.name} AS m WHERE m.control_id = t.control_id AND m.channel = t.channel "
    "AND m.sender = t.sender AND m.dedup_key IS NOT NULL)), 0, %s, %s FROM unnest("
    + ", ".join(f"%s::{_PG_ARRAYS.get(c, 'text')}[]" for c in INSERTED)
    + f", %s::boolean[]) WITH ORDINALITY AS t({', '.join(INSERTED)}, reused, n) ORDER BY n"
    " ON CONFLICT (dedup_key) DO NOTHING RETURNING id, dedup_key, control_id_reused"
)
_PG_LOOKUP = f"SELECT dedup_key, id, ack FROM {messages.name} WHERE dedup_key = ANY(%s::text[])"
_PG_DUPLICATES = (
    f"UPDATE {messages.name} AS m SET duplicates = m.duplicates + d.n, updated_at = %s "
    "FROM unnest(%s::bigint[], %s::int[]) AS d(id, n) WHERE m.id = d.id"
)


class PostgresStore(_DriverStore):
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

    def _statements(self, conn: Any, cursor: Any) -> Statements:
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
        self._cursor.execute(_PG_INSERT, (now, now, *columns, reused))
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


def store_for(engine: Engine) -> Store:
    """Plain driver statements where we know the driver, SQLAlchemy Core elsewhere."""
    dialect = engine.dialect
    if dialect.name == "sqlite" and dialect.driver == "pysqlite":
        return SqliteStore(engine)
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        return PostgresStore(engine)
    return CoreStore(engine)
