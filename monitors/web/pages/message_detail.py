"""What the message page shows about one journaled message besides the records it became
(WebContext.records_of): the message, its deliveries, its dead letters and the WeChat
notices sent for those records. Read-only; each part a query of its own table."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, inspect, select

from channels.wechat.ledger import notices
from core.journal.schema import deliveries, messages
from deadletter.store import dead_letters, decode_for_display


def message(db: Engine, journal_id: int) -> dict[str, Any] | None:
    """The journal row with its raw bytes decoded for reading (`text`), and its deliveries."""
    with db.connect() as conn:
        row = conn.execute(select(messages).where(messages.c.id == journal_id)).first()
        if row is None:
            return None
        out = dict(row._mapping)
        out["text"] = decode_for_display(bytes(out.pop("raw")), out["encoding"])
        query = select(deliveries).where(deliveries.c.journal_id == journal_id)
        out["deliveries"] = [dict(d._mapping) for d in conn.execute(query.order_by(deliveries.c.destination))]
        dl = dead_letters.c
        query = select(dl.id, dl.stage, dl.destination, dl.status, dl.reason, dl.attempts, dl.last_failed_at)
        out["dead_letters"] = [
            dict(d._mapping) for d in conn.execute(query.where(dl.journal_id == journal_id))
        ]
    return out


def sent_notices(db: Engine, record_ids: list[str]) -> list[dict[str, Any]]:
    """WeChat notices made for these records (the ledger, channels/wechat/ledger.py)."""
    if not record_ids or not inspect(db).has_table(notices.name):
        return []  # nothing delivered, or no WeChat destination ever wrote the ledger
    c = notices.c
    query = (
        select(c.id, c.destination, c.event, c.record_id, c.status, c.reason, c.sent_at, c.created_at)
        .where(c.record_id.in_(record_ids))
        .order_by(c.created_at, c.id)
    )
    with db.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
