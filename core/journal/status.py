"""Where each journaled message is: its status, what it was routed to, and each delivery's
outcome, read and moved by the transform and delivery stages and the operator's actions."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select, true, update

from core.clock import now_utc
from core.journal import DELIVERED, PENDING, RECEIVED, RETRYING, ROUTED, Accepted
from core.journal.schema import deliveries, messages, routes_taken
from core.upsert import insert_for


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


def record_routed(
    engine: Engine,
    done: Iterable[tuple[int, str, list[tuple[str, str]]]],
    routes: Mapping[int, Iterable[str]] | None = None,
) -> None:
    """Set each message's status and add its pending deliveries, and the routes that took
    it (`routes`, per journal id), in one transaction.

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
        taken = [{"journal_id": jid, "route": r} for jid, names in (routes or {}).items() for r in set(names)]
        if taken:
            conn.execute(insert_for(conn, routes_taken).on_conflict_do_nothing(), taken)


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
