"""The notice ledger: table `wechat_notices` in the engine database, one row per notice.

A row is inserted once per dedup key — the person (her strongest identifier), the event (and,
for `once_per: record`, the record id), the template and the recipient — so a replay, a
re-drive or a reprocess of the same record finds the row and sends nothing again.

Status: `outbox` (no credentials: written, never sent), `held` (patient quiet hours: sent
when `due_at` comes), `queued` (about to be sent; a crash here sends again on redelivery,
with the same client_msg_id), `sent` (with WeChat's msgid), `undeliverable` (not following,
no consent, bad openid, or no openid bound: with the reason; no retry), `stale` (held past
`stale_after`), `failed` (WeChat refused the data or the template: a dead letter says why).
`errcode` is WeChat's errcode when it last refused the notice (none once it is sent).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Connection,
    Engine,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    inspect,
    select,
    update,
)
from sqlalchemy.schema import CreateColumn

from channels.wechat import delivery_reports
from core.database import RowId, UtcDateTime
from core.upsert import insert_for

__all__ = [
    "FINAL",
    "STATUSES",
    "dedup_key",
    "due",
    "ensure_schema",
    "for_person",
    "insert_once",
    "list_notices",
    "mark",
    "metadata",
    "notices",
    "refused",
]

STATUSES = ("outbox", "held", "queued", "sent", "undeliverable", "stale", "failed")
FINAL = frozenset({"outbox", "sent", "undeliverable", "stale"})
"""A notice in one of these is never sent (again); `queued` and `failed` are tried again
when their record is delivered again, `held` when it falls due."""

metadata = MetaData()

notices = Table(
    "wechat_notices",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("dedup_key", String(64), nullable=False, unique=True),
    Column("destination", String(64), nullable=False),
    Column("event", String(64), nullable=False),
    Column("person", String(300), nullable=False),  # kind:system:value of her strongest identifier
    Column("record_id", String(300), nullable=False),
    Column("record_type", String(40), nullable=False),
    Column("recipient", String(128), nullable=False),  # openid ('' when none is bound); never logged
    Column("role", String(64)),
    Column("template_id", String(128), nullable=False),
    Column("data", JSON, nullable=False),
    Column("url", Text),
    Column("status", String(16), nullable=False),
    Column("reason", Text),
    Column("msgid", String(64)),
    Column("client_msg_id", String(64), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("due_at", UtcDateTime()),
    Column("sent_at", UtcDateTime()),
    Column("errcode", Integer),
)
Index("ix_wechat_notices_due", notices.c.status, notices.c.due_at)
Index("ix_wechat_notices_msgid", notices.c.msgid)


def ensure_schema(engine: Engine) -> None:
    """The ledger, and the delivery reports it is read with; a ledger made before a column
    existed gets it (nullable: old rows keep NULL)."""
    metadata.create_all(engine)
    with engine.begin() as conn:
        present = {c["name"] for c in inspect(conn).get_columns(notices.name)}
        for column in notices.columns:
            if column.name not in present:
                spec = CreateColumn(column).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {notices.name} ADD COLUMN {spec}")
    delivery_reports.ensure_schema(engine)


def dedup_key(person: str, event: str, template_id: str, recipient: str) -> str:
    """The ledger's key of one notice to one recipient (also its client_msg_id for WeChat)."""
    text = "\x1f".join((person, event, template_id, recipient))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def insert_once(conn: Connection, row: dict[str, Any]) -> dict[str, Any] | None:
    """Insert the notice; None when it was new, else the row already holding its key. The
    new row's id comes back through RETURNING: psycopg reports no rowcount for this insert."""
    stmt = insert_for(conn, notices).values(**row).on_conflict_do_nothing(index_elements=["dedup_key"])
    if conn.execute(stmt.returning(notices.c.id)).first() is not None:
        return None
    found = conn.execute(select(notices).where(notices.c.dedup_key == row["dedup_key"])).mappings().first()
    return dict(found) if found else None


def mark(
    conn: Connection,
    row_id: int,
    status: str,
    *,
    reason: str | None = None,
    msgid: str | None = None,
    sent_at: datetime | None = None,
    due_at: datetime | None = None,
    errcode: int | None = None,
    expect: str | None = None,
) -> bool:
    """Set a notice's status (only from `expect` when given); whether a row changed."""
    values: dict[str, Any] = {"status": status, "reason": reason, "errcode": errcode}
    if msgid is not None:
        values["msgid"] = msgid
    if sent_at is not None:
        values["sent_at"] = sent_at
    if due_at is not None:
        values["due_at"] = due_at
    where = notices.c.id == row_id
    if expect is not None:
        where = and_(where, notices.c.status == expect)
    return conn.execute(update(notices).where(where).values(**values)).rowcount == 1


def refused(conn: Connection, row_id: int, errcode: int) -> None:
    """WeChat refused the notice with `errcode` and it stays to be tried again."""
    conn.execute(update(notices).where(notices.c.id == row_id).values(errcode=errcode))


def due(conn: Connection, destination: str, now: datetime, limit: int = 100) -> list[dict[str, Any]]:
    """Held notices of a destination whose time has come, oldest first."""
    query = (
        select(notices)
        .where(notices.c.destination == destination, notices.c.status == "held", notices.c.due_at <= now)
        .order_by(notices.c.due_at, notices.c.id)
        .limit(limit)
    )
    return [dict(r) for r in conn.execute(query).mappings()]


def list_notices(conn: Connection, status: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The newest notices first, of one status or all, each with what WeChat later reported
    of its delivery (`TEMPLATESENDJOBFINISH`, by msgid): `delivery`, `delivery_at`."""
    reports = delivery_reports.wechat_delivery_reports
    query = (
        select(notices, reports.c.status.label("delivery"), reports.c.at.label("delivery_at"))
        .select_from(notices.outerjoin(reports, reports.c.msgid == notices.c.msgid))
        .order_by(notices.c.id.desc())
        .limit(limit)
    )
    if status:
        query = query.where(notices.c.status == status)
    return [dict(r) for r in conn.execute(query).mappings()]


def for_person(conn: Connection, person: str) -> list[dict[str, Any]]:
    """Every notice made for one person, oldest first. `person` is a ledger person key
    (`id_card:…`, `his:SYSTEM:…`), or a bare ID card number or HIS id."""
    c = notices.c
    if ":" in person:
        where = c.person == person
    else:
        from transforms.records.idcard import normalise_id_card

        where = (c.person == f"id_card:{normalise_id_card(person)}") | (
            c.person.like("his:%") & c.person.endswith(f":{person}", autoescape=True)
        )
    query = select(notices).where(where).order_by(c.created_at, c.id)
    return [dict(r) for r in conn.execute(query).mappings()]
