"""Queries behind `mch-engine messages list` (and later the HTTP API); the record store's
own (`records list`, `person`) are in channels/record_store/queries.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, Engine, LargeBinary, Select, func, literal, select, true
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import ColumnElement

from core.journal.schema import deliveries, messages
from deadletter.store import attempts, dead_letters, decode_for_display

MESSAGE_COLUMNS = (
    "id", "received_at", "channel", "sender", "message_type", "control_id",
    "status", "ack_code", "duplicates", "control_id_reused", "error", "peer",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Search:
    """The dashboard's message search, beside the CLI's filters. `identifier` is a 身份证号,
    HIS id or any other value written in the raw message (matched in its bytes: an ASCII
    identifier reads the same in every charset a channel accepts)."""

    control_id: str | None = None
    identifier: str | None = None
    message_type: str | None = None  # `ADT^A04`, or its event's prefix `ADT`
    since: datetime | None = None
    until: datetime | None = None
    journal_ids: frozenset[int] | None = None
    """Only these messages (those that became a person's records, found through the store)."""


class RawContains(ColumnElement[bool]):
    """`raw` holds these bytes: byte-wise, with no pattern characters to escape and whatever
    the charset (LIKE on SQLite stops at bytes that are not UTF-8)."""

    inherit_cache = True
    type = Boolean()

    def __init__(self, column: ColumnElement[Any], wanted: bytes) -> None:
        self.column, self.wanted = column, literal(wanted, LargeBinary())


@compiles(RawContains)
def _instr(element: RawContains, compiler: Any, **kw: Any) -> str:
    return f"(instr({compiler.process(element.column, **kw)}, {compiler.process(element.wanted, **kw)}) > 0)"


@compiles(RawContains, "postgresql")
def _position(element: RawContains, compiler: Any, **kw: Any) -> str:
    inner = f"{compiler.process(element.wanted, **kw)} IN {compiler.process(element.column, **kw)}"
    return f"(position({inner}) > 0)"


def list_messages(
    engine: Engine,
    *,
    channel: str | None,
    status: str | None,
    limit: int | None,
    reused_only: bool = False,
    search: Search | None = None,
) -> Iterator[dict[str, Any]]:
    """Newest first; each row with its deliveries (destination, status, attempts, error)."""
    cols = [messages.c[name] for name in MESSAGE_COLUMNS]
    query = _message_filters(select(*cols), channel, status, reused_only, search)
    query = query.order_by(messages.c.id.desc())
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = [dict(r._mapping) for r in conn.execute(query)]
        ids = [r["id"] for r in rows]
        by_id: dict[int, list[dict[str, Any]]] = {}
        for chunk in _chunks(ids, 500):
            q = select(deliveries).where(deliveries.c.journal_id.in_(chunk))
            for d in conn.execute(q):
                by_id.setdefault(d.journal_id, []).append(
                    {
                        "destination": d.destination,
                        "record_id": d.record_id,
                        "status": d.status,
                        "attempts": d.attempts,
                        "last_error": d.last_error,
                    }
                )
    for row in rows:
        row["deliveries"] = by_id.get(row["id"], [])
        yield _jsonable(row)


def _message_filters(
    query: Select[Any], channel: str | None, status: str | None, reused: bool, search: Search | None = None
) -> Select[Any]:
    if channel:
        query = query.where(messages.c.channel == channel)
    if status:
        query = query.where(messages.c.status == status)
    if reused:
        query = query.where(messages.c.control_id_reused == true())
    return _searched(query, search) if search else query


def _searched(query: Select[Any], s: Search) -> Select[Any]:
    m = messages.c
    if s.control_id:
        query = query.where(m.control_id == s.control_id.strip())
    if s.message_type:
        wanted = s.message_type.strip()
        prefix = m.message_type.startswith(wanted + "^", autoescape=True)
        query = query.where((m.message_type == wanted) | prefix)
    if s.since is not None:
        query = query.where(m.received_at >= s.since)
    if s.until is not None:
        query = query.where(m.received_at < s.until)
    if s.identifier and s.identifier.strip():
        query = query.where(RawContains(m.raw, s.identifier.strip().encode("utf-8")))
    if s.journal_ids is not None:
        query = query.where(m.id.in_(sorted(s.journal_ids)))
    return query


def count_messages(
    engine: Engine,
    *,
    channel: str | None,
    status: str | None,
    reused_only: bool = False,
    search: Search | None = None,
) -> int:
    """How many rows `list_messages` would give without a limit."""
    counted = select(func.count()).select_from(messages)
    query = _message_filters(counted, channel, status, reused_only, search)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def get_message(engine: Engine, journal_id: int) -> dict[str, Any] | None:
    """One journaled message: its row, the raw text, each destination's delivery with every
    attempt, and its dead letters (no payloads)."""
    m = messages.c
    with engine.connect() as conn:
        row = conn.execute(
            select(*[m[n] for n in MESSAGE_COLUMNS], m.raw, m.encoding, m.ack).where(m.id == journal_id)
        ).first()
        if row is None:
            return None
        out = dict(row._mapping)
        raw = bytes(out.pop("raw"))
        out["raw"] = decode_for_display(raw, out["encoding"])
        out["size"] = len(raw)
        tried: dict[tuple[str, str], list[dict[str, Any]]] = {}
        q = select(attempts).where(attempts.c.journal_id == journal_id).order_by(attempts.c.attempt)
        for a in conn.execute(q):
            tried.setdefault((a.destination, a.record_id), []).append(
                _jsonable({"attempt": a.attempt, "at": a.at, "outcome": a.outcome, "error": a.error})
            )
        out["deliveries"] = [
            _jsonable({**dict(d._mapping), "attempt_log": tried.get((d.destination, d.record_id), [])})
            for d in conn.execute(select(deliveries).where(deliveries.c.journal_id == journal_id))
        ]
        d = dead_letters.c
        q2 = select(d.id, d.stage, d.destination, d.record_id, d.status, d.reason, d.last_failed_at)
        out["dead_letters"] = [
            _jsonable(dict(r._mapping)) for r in conn.execute(q2.where(d.journal_id == journal_id))
        ]
    return _jsonable(out)


def journal_channels(engine: Engine) -> list[str]:
    """Every channel the journal has messages from (a channel since removed from routes.yaml too)."""
    with engine.connect() as conn:
        return sorted(str(c) for c in conn.execute(select(messages.c.channel).distinct()).scalars())


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
