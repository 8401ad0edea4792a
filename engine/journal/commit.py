"""Committing one batch of entries: which are duplicates, which reuse a control id, which
rows to insert, in statements any backend provides (`Statements`); SQLAlchemy Core's
own (`CoreStore`) for a database without a fast path."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import structlog
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import DataError, IntegrityError

from core.clock import now_utc
from core.journal import (
    CONTROL_ID_CHARS,
    MESSAGE_TYPE_CHARS,
    RECEIVED,
    SENDER_CHARS,
    Accepted,
    Entry,
    Outcome,
    Written,
)
from core.journal.schema import messages

log = structlog.get_logger("engine.journal")


# --------------------------------------------------------------------- committing a batch


class Statements(Protocol):
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


def commit_batch(sql: Statements, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
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


def reused_flags(
    entries: list[Entry], keys: list[str | None], reused: list[bool], earlier: set[tuple[str, str, str]]
) -> list[bool]:
    """Reused within the batch, or under an id an earlier accepted row has."""
    return [
        r or (k is not None and e.sent_as in earlier) for e, k, r in zip(entries, keys, reused, strict=True)
    ]


def control_ids(entries: list[Entry], keys: list[str | None]) -> list[str]:
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
        "journaled_at": now,
        "control_id_reused": reused,
    }


# The columns the hot insert fills, in this order; the table above stays the schema.
INSERTED = (
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
assert all(name in messages.c for name in INSERTED)


class Store:
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


class CoreStore(Store):
    """Any database SQLAlchemy speaks to."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def commit(self, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
        with self._engine.begin() as conn:
            return commit_batch(_CoreStatements(conn), entries)


def commit_in(conn: Connection, entries: Sequence[Entry]) -> tuple[list[Outcome], list[Accepted]]:
    """Journal `entries` in the caller's transaction `conn` (through SQLAlchemy Core)."""
    return commit_batch(_CoreStatements(conn), entries)


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
        cids = control_ids(entries, keys)
        earlier: set[tuple[str, str, str]] = set()
        if cids:
            query = select(messages.c.channel, messages.c.sender, messages.c.control_id).where(
                messages.c.control_id.in_(cids) & messages.c.dedup_key.is_not(None)
            )
            earlier = {(c, s, i) for c, s, i in self._conn.execute(query)}
        flags = reused_flags(entries, keys, reused, earlier)
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
