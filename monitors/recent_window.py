"""Rates and latency percentiles over the journal's recent past, in SQL.

A journal grows to millions of rows; the monitors are polled every few seconds. So these
numbers read a bounded window: the last `WINDOW_ROWS` journal ids (a primary-key range, no
extra index the hot insert would pay for) and, of those, the last `WINDOW` of time. When
the engine is busy enough that the rows cover less than `WINDOW`, a rate is taken over the
time the rows do cover, so it stays a rate and not a truncated count.

Latencies: the ACK latency is a message's `journaled_at` (the commit that releases its
ACK) minus `received_at` (the frame's arrival); the delivery latency is a delivered row's
`updated_at` minus its message's `received_at`. Percentiles are nearest-rank, picked with
window functions (SQLite 3.25+, PostgreSQL, MariaDB 10.2+, SQL Server).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Float, and_, case, cast, func, literal_column, or_, select

from engine import journal

WINDOW = timedelta(minutes=15)
WINDOW_ROWS = 10_000
QUANTILES = (0.5, 0.95, 0.99)


@dataclass
class Recent:
    """Per channel and per destination: counts in the last minute and `WINDOW`, and the
    latency quantiles (seconds) of the window."""

    minutes: float = WINDOW.total_seconds() / 60  # what the window covers
    received_1m: dict[str, int] = field(default_factory=dict)
    received_15m: dict[str, int] = field(default_factory=dict)
    delivered_1m: dict[str, int] = field(default_factory=dict)
    ack: dict[str, dict[float, float]] = field(default_factory=dict)
    delivery: dict[str, dict[float, float]] = field(default_factory=dict)

    def per_minute(self, count: int, minutes: float) -> float:
        return round(count / max(min(minutes, self.minutes), 1 / 60), 2)


def read(conn: Connection, now: datetime) -> Recent:
    m, d = journal.messages, journal.deliveries
    top = conn.execute(select(func.max(m.c.id))).scalar()
    out = Recent()
    if top is None:
        return out
    low = top - WINDOW_ROWS
    since, minute = now - WINDOW, now - timedelta(minutes=1)
    rows = and_(m.c.id > low, m.c.received_at >= since)
    oldest, full = conn.execute(select(func.min(m.c.received_at), func.count()).where(m.c.id > low)).one()
    start = aware(oldest)
    if full >= WINDOW_ROWS and start is not None:
        out.minutes = max((now - start).total_seconds() / 60, 1 / 60)
    last_minute = func.sum(_case(m.c.received_at >= minute))
    for channel, n15, n1 in conn.execute(
        select(m.c.channel, func.count(), last_minute).where(rows).group_by(m.c.channel)
    ):
        out.received_15m[channel], out.received_1m[channel] = int(n15), int(n1 or 0)
    delivered = and_(d.c.journal_id > low, d.c.status == journal.DELIVERED, d.c.updated_at >= since)
    for dest, n1 in conn.execute(
        select(d.c.destination, func.count())
        .where(delivered & (d.c.updated_at >= minute))
        .group_by(d.c.destination)
    ):
        out.delivered_1m[dest] = int(n1)
    seconds = _seconds(conn)
    ack = seconds(m.c.received_at, m.c.journaled_at)
    out.ack = _quantiles(conn, m.c.channel, ack, rows & m.c.journaled_at.is_not(None))
    latency = seconds(m.c.received_at, d.c.updated_at)
    joined = and_(delivered, m.c.id == d.c.journal_id)
    out.delivery = _quantiles(conn, d.c.destination, latency, joined)
    return out


def _quantiles(
    conn: Connection, key: ColumnElement[Any], value: ColumnElement[Any], where: ColumnElement[bool]
) -> dict[str, dict[float, float]]:
    """Nearest-rank quantiles of `value` per `key`: the first row whose rank / n reaches q."""
    ranked = (
        select(
            key.label("k"),
            value.label("v"),
            func.row_number().over(partition_by=key, order_by=value).label("rn"),
            func.count().over(partition_by=key).label("n"),
        )
        .where(where)
        .subquery()
    )
    rn, n = ranked.c.rn, ranked.c.n
    picks = [and_(rn * 100 >= int(q * 100) * n, (rn - 1) * 100 < int(q * 100) * n) for q in QUANTILES]
    out: dict[str, dict[float, float]] = {}
    for k, v, r, total in conn.execute(select(ranked.c.k, ranked.c.v, rn, n).where(or_(*picks))):
        for q in QUANTILES:
            if r * 100 >= int(q * 100) * total and (r - 1) * 100 < int(q * 100) * total:
                out.setdefault(k, {})[q] = round(max(float(v), 0.0), 4)
    return out


def _case(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return case((condition, 1), else_=0)


def _seconds(conn: Connection) -> Any:
    """`later - earlier` in seconds, as this database computes it."""
    name = conn.dialect.name

    def seconds(earlier: ColumnElement[Any], later: ColumnElement[Any]) -> ColumnElement[Any]:
        if name == "sqlite":  # julianday() keeps milliseconds only: whole seconds + the fraction
            return _sqlite_epoch(later) - _sqlite_epoch(earlier)
        if name == "postgresql":
            return func.extract("epoch", later - earlier)
        if name in ("mysql", "mariadb"):
            return func.timestampdiff(literal_column("MICROSECOND"), earlier, later) / 1e6
        return func.datediff_big(literal_column("microsecond"), earlier, later) / 1e6  # SQL Server

    return seconds


def _sqlite_epoch(column: ColumnElement[Any]) -> ColumnElement[Any]:
    """Seconds since 1970 of a stored `YYYY-MM-DD HH:MM:SS.ffffff`, to the microsecond."""
    return cast(func.strftime("%s", column), Float) + cast(func.substr(column, 20), Float)


def aware(value: datetime | str | None) -> datetime | None:
    """Aggregates bypass the column type on SQLite: a naive UTC datetime or its text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
