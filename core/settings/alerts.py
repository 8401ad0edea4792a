"""The `alerts:` section of routes.yaml: the bounds the engine's own alert rules hold the
numbers to (monitors/alerts/, docs/monitoring.md).

Every bound has a default, so a file without the section still alerts on a feed silent for
15 minutes, a dead letter, a backlog, a service down, low disk. A feed that is quiet by
design at night says so under `feeds:`.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from core.settings.values import Name, PositiveDuration, Size

__all__ = ["AlertSettings", "FeedAlerts", "parse_hours"]

_HOURS = re.compile(r"([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)")


def parse_hours(text: str) -> tuple[int, int]:
    """("07:30-21:00") → minutes after midnight (450, 1260); the end may be past midnight."""
    match = _HOURS.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"invalid hours {text!r} (write HH:MM-HH:MM, e.g. 07:30-21:00)")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"hours {text!r} start and end at the same time (leave `hours` out for all day)")
    return start, end


def _hours(value: str) -> str:
    parse_hours(value)
    return value


Hours = Annotated[str, AfterValidator(_hours)]
"""`HH:MM-HH:MM` in engine.timezone; the end may be past midnight (20:00-08:00)."""


class _Strict(BaseModel):
    """Unknown keys are errors (as in every section; models.py imports this one)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FeedAlerts(_Strict):
    """One channel's silence rule."""

    silent_after: PositiveDuration | None = Field(
        default=None,
        description="Alert when no message came for this long (inside `hours`); absent: the section's "
        "`silent_after`.",
    )
    hours: Hours | None = Field(
        default=None,
        description='Working hours, engine.timezone, e.g. "07:30-21:00": silence outside them never '
        "alerts, and silence is counted from their start. Absent: the section's `hours` (all day).",
    )
    silent: bool = Field(default=True, description="false: never alert on this channel's silence.")


class AlertSettings(_Strict):
    """Bounds of the alert rules the engine evaluates itself (the same as
    monitors/prometheus/alerts.yml)."""

    silent_after: PositiveDuration = Field(
        default=900.0, description="A feed without a message this long alerts (default 15m)."
    )
    hours: Hours | None = Field(
        default=None, description='Working hours for every feed, e.g. "07:30-21:00"; absent: all day.'
    )
    feeds: dict[Name, FeedAlerts] = Field(
        default_factory=dict, description="Per channel: its own `silent_after`, `hours`, or `silent: false`."
    )
    error_rate: float = Field(
        default=10.0,
        gt=0,
        description="Messages per minute a channel rejects or fails to map, over `rate_window`, above "
        "which it alerts.",
    )
    dead_letter_rate: float = Field(
        default=5.0,
        gt=0,
        description="Dead letters per minute (all destinations), over `rate_window`, above which it alerts.",
    )
    rate_window: PositiveDuration = Field(default=300.0, description="Window of the two rates (default 5m).")
    delivery_lag: PositiveDuration = Field(
        default=900.0, description="A destination whose oldest undelivered message is older alerts (15m)."
    )
    queue_depth: int = Field(
        default=10_000, gt=0, description="A destination with more messages waiting alerts."
    )
    disk_free_ratio: float = Field(
        default=0.10, gt=0, lt=1, description="Free share of the journal's disk below which it alerts."
    )
    disk_free_bytes: Size = Field(
        default=1 << 30, description="Free bytes of the journal's disk below which it alerts (1 GiB)."
    )
    wechat_quota_ratio: float = Field(
        default=0.10,
        gt=0,
        lt=1,
        description="Share of a WeChat API's daily quota left below which it alerts.",
    )
    repeat_every: PositiveDuration = Field(
        default=3600.0, description="An alert still open is sent again this often (default 1h)."
    )

    def feed(self, channel: str) -> tuple[float | None, tuple[int, int] | None]:
        """A channel's silence limit (None: never) and working hours (None: all day)."""
        own = self.feeds.get(channel) or FeedAlerts()
        if not own.silent:
            return None, None
        hours = own.hours or self.hours
        return own.silent_after or self.silent_after, parse_hours(hours) if hours else None
