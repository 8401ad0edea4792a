"""WeChat's daily quotas and the per-account send rate, kept in the engine database.

Every engine process sending for the same WeChat account (appid) reads and writes the same
two tables, created when first used (like `wechat_tokens`):

- `wechat_quota`, one row per (appid, api path): what `cgi-bin/openapi/quota/get` last said
  (daily_limit, used, remain, read_at) and `paused_until`, written when WeChat answers 45009.
  A process that did not get the 45009 (or one started later) sees the pause and sends nothing
  until it ends.
- `wechat_senders`, one row per sending destination: the appid it sends through.
- `wechat_rate`, one row per appid: the current window (a whole number of `window` seconds
  since the epoch) and the sends taken in it. Taking a slot is a single conditional UPDATE,
  which also refuses while the API is paused, so the usual send costs one statement; a
  process over the limit sleeps until the next window.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    and_,
    case,
    exists,
    or_,
    select,
    update,
)

from core.database import UtcDateTime
from core.upsert import insert_for

__all__ = [
    "TEMPLATE_SEND",
    "AccountLimits",
    "Paused",
    "ensure_schema",
    "metadata",
    "paused_until",
    "record_pause",
    "record_quota",
    "wechat_quota",
    "wechat_rate",
    "wechat_senders",
]

TEMPLATE_SEND = "/cgi-bin/message/template/send"

metadata = MetaData()

wechat_quota = Table(
    "wechat_quota",
    metadata,
    Column("appid", String(64), nullable=False),
    Column("api", String(128), nullable=False),
    Column("daily_limit", BigInteger),
    Column("used", BigInteger),
    Column("remain", BigInteger),
    Column("read_at", UtcDateTime()),
    Column("paused_until", UtcDateTime()),
    PrimaryKeyConstraint("appid", "api"),
)

wechat_senders = Table(
    "wechat_senders",
    metadata,
    Column("destination", String(64), primary_key=True),
    Column("appid", String(64), nullable=False),
)
"""Which account each sending destination uses: `status` names the destinations a pause stops."""

wechat_rate = Table(
    "wechat_rate",
    metadata,
    Column("appid", String(64), primary_key=True),
    Column("slot", BigInteger, nullable=False),  # the window: seconds since the epoch // window
    Column("sent", Integer, nullable=False),
)


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def _ensure_row(conn: Connection, appid: str, api: str) -> None:
    conn.execute(insert_for(conn, wechat_quota).on_conflict_do_nothing(), {"appid": appid, "api": api})


def record_quota(conn: Connection, appid: str, api: str, quota: dict[str, int], at: datetime) -> None:
    """Store what quota/get answered for one API."""
    _ensure_row(conn, appid, api)
    where = and_(wechat_quota.c.appid == appid, wechat_quota.c.api == api)
    conn.execute(
        update(wechat_quota)
        .where(where)
        .values(
            daily_limit=int(quota.get("daily_limit", 0)),
            used=int(quota.get("used", 0)),
            remain=int(quota.get("remain", 0)),
            read_at=at,
        )
    )


def record_pause(conn: Connection, appid: str, api: str, until: datetime) -> bool:
    """Pause the API until `until`; whether this call started the pause (False when another
    process already recorded it), so the alert is raised once per pause."""
    _ensure_row(conn, appid, api)
    c = wechat_quota.c
    newer = or_(c.paused_until.is_(None), c.paused_until < until)
    stmt = update(wechat_quota).where(c.appid == appid, c.api == api, newer).values(paused_until=until)
    return conn.execute(stmt).rowcount == 1


def paused_until(conn: Connection, appid: str, api: str, now: datetime) -> datetime | None:
    """The end of the API's pause, if it is paused at `now`."""
    c = wechat_quota.c
    query = select(c.paused_until).where(c.appid == appid, c.api == api, c.paused_until > now)
    return conn.execute(query).scalar()


class Paused(Exception):
    """The API is paused (45009 seen by some process) until `until`."""

    def __init__(self, until: datetime) -> None:
        self.until = until
        super().__init__(f"paused until {until.isoformat()}")


class AccountLimits:
    """The send gate of one WeChat account, shared through the engine database: at most
    `per_minute` sends per window of `window` seconds (60), none while the API is paused."""

    def __init__(
        self,
        engine: Engine,
        destination: str,
        appid: str,
        per_minute: int,
        *,
        window: float = 60.0,
        wall: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.appid = appid
        self.per_minute = per_minute
        self.window = window
        self.wall = wall
        self.sleep = sleep
        ensure_schema(engine)
        with engine.begin() as conn:
            conn.execute(
                insert_for(conn, wechat_rate).on_conflict_do_nothing(),
                {"appid": appid, "slot": 0, "sent": 0},
            )
            conn.execute(
                insert_for(conn, wechat_senders)
                .values(destination=destination, appid=appid)
                .on_conflict_do_update(index_elements=["destination"], set_={"appid": appid})
            )

    def acquire(self, api: str, now: Callable[[], datetime]) -> None:
        """Wait for a slot in the account's window; raises `Paused` while `api` is paused."""
        r, q = wechat_rate.c, wechat_quota.c
        while True:
            moment = now()
            slot = int(self.wall() // self.window)
            pause = exists().where(q.appid == self.appid, q.api == api, q.paused_until > moment)
            take = (
                update(wechat_rate)
                .where(r.appid == self.appid, or_(r.slot != slot, r.sent < self.per_minute), ~pause)
                .values(slot=slot, sent=_next_count(slot))
            )
            with self.engine.begin() as conn:
                if conn.execute(take).rowcount == 1:
                    return
                until = paused_until(conn, self.appid, api, moment)
            if until is not None:
                raise Paused(until)
            self.sleep(max(0.0, (slot + 1) * self.window - self.wall()) + 0.001)


def _next_count(slot: int) -> Any:
    c = wechat_rate.c
    return case((c.slot == slot, c.sent + 1), else_=1)
