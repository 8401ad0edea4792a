"""Running totals of what retention pruned, per kind, and when it last ran (table
`retention_totals`, engine database).

`/metrics` and `status` are rebuilt from the database at every scrape, and a pruned row
leaves nothing to count: so each real pass adds its counts here at its end. A row per kind:
the total since the table was made, the last pass's count and time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import BigInteger, Column, Engine, Integer, MetaData, String, Table, select, update

from core.database import UtcDateTime, once_per_database

metadata = MetaData()

totals = Table(
    "retention_totals",
    metadata,
    Column("kind", String(32), primary_key=True),
    Column("total", BigInteger, nullable=False),
    Column("last_count", Integer, nullable=False),
    Column("last_at", UtcDateTime(), nullable=False),
)


@dataclass
class RetentionTotals:
    """What `status` shows and `/metrics` counts: the last pass and the totals since."""

    last_at: datetime | None = None
    last: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)


def ensure_schema(engine: Engine) -> None:
    """Once per database and process: `status` and every scrape read the table."""
    once_per_database(engine, totals.name, metadata.create_all)


def record(engine: Engine, counts: Mapping[str, int], at: datetime) -> None:
    """Add one pass's counts (one transaction; passes never run at once: one leader)."""
    ensure_schema(engine)
    c = totals.c
    with engine.begin() as conn:
        known = {row.kind: row.total for row in conn.execute(select(c.kind, c.total))}
        for kind, n in counts.items():
            if kind in known:
                change = update(totals).where(c.kind == kind)
                conn.execute(change.values(total=known[kind] + n, last_count=n, last_at=at))
            else:
                conn.execute(totals.insert().values(kind=kind, total=n, last_count=n, last_at=at))


def read(engine: Engine) -> RetentionTotals:
    """The totals so far; empty when no pass has run."""
    ensure_schema(engine)
    found = RetentionTotals()
    with engine.connect() as conn:
        for row in conn.execute(select(totals)):
            found.total[row.kind] = int(row.total)
            found.last[row.kind] = int(row.last_count)
            if found.last_at is None or row.last_at > found.last_at:
                found.last_at = row.last_at
    return found
