"""Queries behind `mch-engine messages list` (and later the HTTP API); the record store's
own (`records list`, `person`) are in channels/record_store/queries.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, Select, func, select, true

from core.journal.schema import deliveries, messages

MESSAGE_COLUMNS = (
    "id", "received_at", "channel", "sender", "message_type", "control_id",
    "status", "ack_code", "duplicates", "control_id_reused", "error", "peer",
)  # fmt: skip


def list_messages(
    engine: Engine,
    *,
    channel: str | None,
    status: str | None,
    limit: int | None,
    reused_only: bool = False,
) -> Iterator[dict[str, Any]]:
    """Newest first; each row with its deliveries (destination, status, attempts, error)."""
    cols = [messages.c[name] for name in MESSAGE_COLUMNS]
    query = _message_filters(select(*cols), channel, status, reused_only).order_by(messages.c.id.desc())
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
    query: Select[Any], channel: str | None, status: str | None, reused: bool
) -> Select[Any]:
    if channel:
        query = query.where(messages.c.channel == channel)
    if status:
        query = query.where(messages.c.status == status)
    if reused:
        query = query.where(messages.c.control_id_reused == true())
    return query


def count_messages(
    engine: Engine, *, channel: str | None, status: str | None, reused_only: bool = False
) -> int:
    """How many rows `list_messages` would give without a limit."""
    query = _message_filters(select(func.count()).select_from(messages), channel, status, reused_only)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)


def journal_channels(engine: Engine) -> list[str]:
    """Every channel the journal has messages from (a channel since removed from routes.yaml too)."""
    with engine.connect() as conn:
        return sorted(str(c) for c in conn.execute(select(messages.c.channel).distinct()).scalars())


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
