"""The WeChat part of `mch-engine status`: per `wechat` destination, the daily quota left of each
API it calls, a pause after 45009 (a problem while it lasts), and its notices by outcome.

Read from the engine database (channels/wechat/monitoring.py); no openid, no person.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine

from channels.wechat.monitoring import quota_snapshots, send_counts
from core.settings import Settings

__all__ = ["Outcome", "QuotaNumbers", "WechatNumbers", "wechat_numbers"]


@dataclass
class QuotaNumbers:
    api: str
    daily_limit: int | None
    used: int | None
    remain: int | None
    read_at: datetime | None


@dataclass
class Outcome:
    result: str  # the ledger status: sent, undeliverable, failed, ...
    errcode: str  # WeChat's last refusal code, "" when none
    count: int


@dataclass
class WechatNumbers:
    name: str
    quota: list[QuotaNumbers] = field(default_factory=list)
    paused_until: datetime | None = None  # set while a 45009 pauses sending
    sent: int = 0
    undeliverable: int = 0
    failed: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    by_errcode: dict[str, int] = field(default_factory=dict)  # WeChat's last refusal per notice
    outcomes: list[Outcome] = field(default_factory=list)  # the two above, crossed


def wechat_numbers(settings: Settings, db: Engine, now: datetime) -> list[WechatNumbers]:
    """One entry per `wechat` destination of routes.yaml (none: nothing is read)."""
    names = [name for name, d in settings.destinations.items() if d.type == "wechat"]
    if not names:
        return []
    snapshots = quota_snapshots(db)
    counts = {c.destination: c for c in send_counts(db)}
    found = []
    for name in names:
        numbers = WechatNumbers(name)
        for snap in (s for s in snapshots if name in s.destinations):
            read = QuotaNumbers(snap.api, snap.daily_limit, snap.used, snap.remain, snap.read_at)
            numbers.quota.append(read)
            if snap.paused(now):
                numbers.paused_until = max(filter(None, (numbers.paused_until, snap.paused_until)))
        mine = counts.get(name)
        if mine is not None:
            numbers.by_status = dict(mine.by_status)
            numbers.by_errcode = {str(code): n for code, n in sorted(mine.by_errcode.items())}
            numbers.outcomes = [
                Outcome(st, "" if code is None else str(code), n)
                for (st, code), n in sorted(mine.by_outcome.items(), key=str)
            ]
            numbers.sent = mine.by_status.get("sent", 0)
            numbers.undeliverable = mine.by_status.get("undeliverable", 0)
            numbers.failed = mine.by_status.get("failed", 0)
        found.append(numbers)
    return found
