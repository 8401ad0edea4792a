"""The `alerts` table in the journal database: one row per episode, so a restart neither
forgets an open alert nor sends it again. The dashboard reads `open_alerts` and
`recent_alerts`; the `alerts` channel writes transitions with `apply`, in the transaction
that journals their notices.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from core.database import RowId, UtcDateTime
from monitors.alerts.evaluate import OPEN, REPEAT, RESOLVE, OpenAlert, Transition

__all__ = [
    "FIRING",
    "RESOLVED",
    "AlertRow",
    "alerts",
    "apply",
    "ensure_schema",
    "open_alerts",
    "recent_alerts",
]

FIRING, RESOLVED = "firing", "resolved"

metadata = MetaData()
alerts = Table(
    "alerts",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("rule", String(64), nullable=False),
    Column("subject", String(200), nullable=False),
    Column("severity", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("opened_at", UtcDateTime(), nullable=False),
    Column("last_notified_at", UtcDateTime(), nullable=False),
    Column("resolved_at", UtcDateTime()),
    Column("summary", Text, nullable=False, default=""),  # zh; names of channels, never patient data
    Column("summary_en", Text, nullable=False, default=""),
)
Index("ix_alerts_state", alerts.c.state, alerts.c.rule, alerts.c.subject)
Index("ix_alerts_opened_at", alerts.c.opened_at)


@dataclass(frozen=True, slots=True)
class AlertRow:
    """An episode as the dashboard shows it."""

    id: int
    rule: str
    subject: str
    severity: str
    state: str
    opened_at: datetime
    last_notified_at: datetime
    resolved_at: datetime | None
    summary: str
    summary_en: str


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def _rows(engine: Engine, query: Any) -> list[AlertRow]:
    ensure_schema(engine)
    with engine.connect() as conn:
        return [AlertRow(**row._mapping) for row in conn.execute(query)]


def open_alerts(engine: Engine) -> list[AlertRow]:
    """Episodes still firing, the oldest first."""
    query = select(alerts).where(alerts.c.state == FIRING).order_by(alerts.c.opened_at, alerts.c.id)
    return _rows(engine, query)


def recent_alerts(engine: Engine, limit: int = 100) -> list[AlertRow]:
    """The latest episodes, open or past, the newest first."""
    return _rows(engine, select(alerts).order_by(alerts.c.opened_at.desc(), alerts.c.id.desc()).limit(limit))


def firing(engine: Engine) -> list[OpenAlert]:
    """Open episodes as the evaluator takes them."""
    return [
        OpenAlert(
            r.id, r.rule, r.subject, r.severity, r.opened_at, r.last_notified_at, r.summary, r.summary_en
        )
        for r in open_alerts(engine)
    ]


def apply(conn: Connection, transitions: Iterable[Transition]) -> None:
    """Write transitions: a new row per opened episode, the time of each repeat, the end."""
    for t in transitions:
        if t.kind == OPEN:
            conn.execute(
                insert(alerts).values(
                    rule=t.rule,
                    subject=t.subject,
                    severity=t.severity,
                    state=FIRING,
                    opened_at=t.opened_at,
                    last_notified_at=t.at,
                    summary=t.summary,
                    summary_en=t.summary_en,
                )
            )
        elif t.kind == REPEAT:
            conn.execute(
                update(alerts)
                .where(alerts.c.id == t.alert_id)
                .values(last_notified_at=t.at, summary=t.summary, summary_en=t.summary_en)
            )
        elif t.kind == RESOLVE:
            conn.execute(
                update(alerts)
                .where(alerts.c.id == t.alert_id)
                .values(state=RESOLVED, resolved_at=t.at, last_notified_at=t.at)
            )
