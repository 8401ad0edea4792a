"""Times as an operator reads them: in the configured `engine.timezone`, with its offset.

The database keeps UTC; a person on call reads local time, and a time without its
offset is ambiguous the moment two sites or a log file are compared. Tables print
`2024-03-21 09:15:00+08:00`; `--json` prints ISO 8601 (`2024-03-21T09:15:00+08:00`).
"""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo


def _aware(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _offset(when: datetime) -> str:
    text = when.strftime("%z")  # +0800
    return f"{text[:3]}:{text[3:]}" if text else ""


def local_time(value: datetime | str | None, tz: tzinfo) -> str:
    """`2024-03-21 09:15:00+08:00`, or `-` when there is no time."""
    when = _aware(value)
    if when is None:
        return "-"
    local = when.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M:%S") + _offset(local)


def local_date(value: datetime | str | None, tz: tzinfo) -> str:
    """The calendar day in the configured zone, or `----------`."""
    when = _aware(value)
    return when.astimezone(tz).strftime("%Y-%m-%d") if when else "----------"


def iso_time(value: datetime | str | None, tz: tzinfo) -> str | None:
    """ISO 8601 with the zone's offset, for `--json`."""
    when = _aware(value)
    return when.astimezone(tz).isoformat() if when else None
