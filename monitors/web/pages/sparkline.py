"""Each channel's messages per minute over the last half hour, and its sparkline as inline
SVG drawn here on the server: no chart library, no script, one query for every channel.

The minute buckets are cut in SQL with a CASE over fixed boundaries, which every journal
database (SQLite, PostgreSQL) reads the same way, so a journal of any size sends back at
most channels × minutes rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, case, func, select

from core.journal.schema import messages

MINUTES = 30
WIDTH, HEIGHT = 120, 24


def per_minute(db: Engine, now: datetime, minutes: int = MINUTES) -> dict[str, list[int]]:
    """Per channel, messages received in each of the last `minutes` minutes, oldest first."""
    start = now - timedelta(minutes=minutes)
    received = messages.c.received_at
    whens = [(received < start + timedelta(minutes=i + 1), i) for i in range(minutes - 1)]
    bucket = case(*whens, else_=minutes - 1).label("bucket")
    query = (
        select(messages.c.channel, bucket, func.count())
        .where(received >= start, received < now)
        .group_by(messages.c.channel, bucket)
    )
    out: dict[str, list[int]] = {}
    with db.connect() as conn:
        for channel, index, n in conn.execute(query):
            out.setdefault(channel, [0] * minutes)[int(index)] = int(n)
    return out


def svg(counts: list[int], label: str) -> str:
    """A polyline of the counts, scaled to the largest; a flat line at the bottom when idle.
    Only numbers go into the markup, and the label is the accessible title (escaped)."""
    n = len(counts) or 1
    top = max(counts, default=0) or 1
    step = WIDTH / max(n - 1, 1)
    points = " ".join(
        f"{i * step:.1f},{HEIGHT - 1 - (c / top) * (HEIGHT - 2):.1f}" for i, c in enumerate(counts or [0])
    )
    title = label.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")
    return (
        f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'role="img" aria-label="{title}"><title>{title}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="1.5" points="{points}"/></svg>'
    )
