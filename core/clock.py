"""The one clock every stored timestamp comes from: aware, in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["now_utc"]


def now_utc() -> datetime:
    return datetime.now(UTC)
