"""WeChat's `TEMPLATESENDJOBFINISH` results, by msgid: `success`, `failed:user block`,
`failed: system failed`. Kept by msgid in `wechat_delivery_reports` (a report may arrive
before the notice's own row is committed), and read with the notice ledger
(`ledger.list_notices`, `mch-engine wechat outbox`); a repeated callback for the same msgid
keeps the latest status."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, select

from core.database import UtcDateTime

metadata = MetaData()

wechat_delivery_reports = Table(
    "wechat_delivery_reports",
    metadata,
    Column("msgid", String(64), primary_key=True),
    Column("status", String(64), nullable=False),
    Column("at", UtcDateTime(), nullable=False),
)


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def record_delivery_report(conn: Connection, msgid: str, status: str, at: datetime) -> None:
    c = wechat_delivery_reports.c
    known = conn.execute(select(c.msgid).where(c.msgid == msgid).with_for_update()).first()
    if known is None:
        conn.execute(wechat_delivery_reports.insert().values(msgid=msgid, status=status[:64], at=at))
    else:
        change = wechat_delivery_reports.update().where(c.msgid == msgid)
        conn.execute(change.values(status=status[:64], at=at))


def delivery_report(conn: Connection, msgid: str) -> tuple[str, datetime] | None:
    """(status, time) WeChat reported for a msgid, or None."""
    c = wechat_delivery_reports.c
    row = conn.execute(select(c.status, c.at).where(c.msgid == msgid)).first()
    return (row.status, row.at) if row else None
