"""Callback replay protection: a request older or newer than `WINDOW` is refused, and one seen
before is answered without being applied again.

WeChat's `signature` covers only the token, `timestamp` and `nonce` — in plaintext mode not
the body — so a captured request could be sent again, or its query reused with another body.
Table `wechat_callback_seen` (engine database) keeps the keys of recent requests: the
(timestamp, nonce) pair, and the event's own key (FromUserName + CreateTime + Event, with
the MsgID of a delivery report; the MsgId of a plain message), which WeChat's own
documentation recommends for retries. A key is claimed in the same transaction that applies
the event, so a request that failed halfway leaves nothing claimed and WeChat's retry is
applied; a retry of one that succeeded is answered `success` and changes nothing. Rows older
than the window are pruned as requests arrive.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import Column, Connection, Engine, Index, MetaData, String, Table, delete, select

from core.database import UtcDateTime

__all__ = ["WINDOW", "claim", "ensure_schema", "timestamp_fresh"]

WINDOW = timedelta(minutes=5)
metadata = MetaData()

wechat_callback_seen = Table(
    "wechat_callback_seen",
    metadata,
    Column("key", String(200), primary_key=True),
    Column("seen_at", UtcDateTime(), nullable=False),
)
Index("ix_wechat_callback_seen_at", wechat_callback_seen.c.seen_at)


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def timestamp_fresh(timestamp: str, now: datetime) -> bool:
    """The request's `timestamp` (Unix seconds) is within `WINDOW` of now, either way."""
    if not timestamp.isdigit():
        return False
    return abs(now.timestamp() - int(timestamp)) <= WINDOW.total_seconds()


def claim(conn: Connection, keys: Sequence[str], now: datetime) -> bool:
    """Record `keys` as seen; False when any was seen within the window (nothing recorded).
    Two requests claiming the same key at once: the second insert waits for the first
    transaction and then fails on the primary key — the caller treats that as seen."""
    keys = [k[:200] for k in keys]
    c = wechat_callback_seen.c
    conn.execute(delete(wechat_callback_seen).where(c.seen_at < now - WINDOW))
    if conn.execute(select(c.key).where(c.key.in_(keys)).limit(1)).first() is not None:
        return False
    conn.execute(wechat_callback_seen.insert(), [{"key": k, "seen_at": now} for k in keys])
    return True
