"""What the monitors read of the WeChat notifier: quotas, pauses and send outcomes.

    quota_snapshots(engine)  one QuotaSnapshot per (account, API): WeChat's daily quota as last
                             read, the destinations sending through it, and the pause, if any
    send_counts(engine)      per destination: notices by ledger status and by WeChat errcode

Counts and names only: no openid, no person, no template value.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, func, select

from channels.wechat import ledger, quota

__all__ = ["QuotaSnapshot", "SendCounts", "quota_snapshots", "send_counts"]


@dataclass
class QuotaSnapshot:
    appid: str
    api: str
    destinations: list[str]
    daily_limit: int | None
    used: int | None
    remain: int | None
    read_at: datetime | None
    paused_until: datetime | None

    def paused(self, now: datetime) -> bool:
        return self.paused_until is not None and self.paused_until > now


@dataclass
class SendCounts:
    destination: str
    by_status: dict[str, int] = field(default_factory=dict)
    by_errcode: dict[int, int] = field(default_factory=dict)
    by_outcome: dict[tuple[str, int | None], int] = field(default_factory=dict)  # (status, errcode)


def quota_snapshots(engine: Engine) -> list[QuotaSnapshot]:
    quota.ensure_schema(engine)
    q, s = quota.wechat_quota.c, quota.wechat_senders.c
    with engine.connect() as conn:
        senders: dict[str, list[str]] = {}
        for destination, appid in conn.execute(select(s.destination, s.appid).order_by(s.destination)):
            senders.setdefault(appid, []).append(destination)
        rows = conn.execute(select(quota.wechat_quota).order_by(q.appid, q.api)).mappings().all()
    return [
        QuotaSnapshot(
            appid=r["appid"],
            api=r["api"],
            destinations=senders.get(r["appid"], []),
            daily_limit=r["daily_limit"],
            used=r["used"],
            remain=r["remain"],
            read_at=r["read_at"],
            paused_until=r["paused_until"],
        )
        for r in rows
    ]


def send_counts(engine: Engine) -> list[SendCounts]:
    ledger.ensure_schema(engine)
    c = ledger.notices.c
    found: dict[str, SendCounts] = {}
    with engine.connect() as conn:
        outcomes = select(c.destination, c.status, c.errcode, func.count()).group_by(
            c.destination, c.status, c.errcode
        )
        for destination, status, code, n in conn.execute(outcomes):
            counts = found.setdefault(destination, SendCounts(destination))
            counts.by_outcome[(status, None if code is None else int(code))] = n
            counts.by_status[status] = counts.by_status.get(status, 0) + n
            if code is not None:
                counts.by_errcode[int(code)] = counts.by_errcode.get(int(code), 0) + n
    return [found[name] for name in sorted(found)]
