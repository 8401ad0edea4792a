"""The engine's numbers, built once: `mch-engine status`, the HTTP `/status`, and later the
dashboard and `/metrics` all read `collect()`.

Persistent facts (what was received, routed, failed, what waits, dead letters) come from the
journal database; live facts (listening, open connections, roles) from the heartbeat rows
the running processes write (monitors/heartbeat.py); queue depth on RabbitMQ from the broker.
Nothing here holds patient data: counts, times, and names of channels, routes, destinations.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text, union

from core.database import make_engine
from core.masking import masked_url
from core.settings import Settings
from deadletter import store as dead_letters
from engine import channel_control, journal
from engine.bus import Bus, capabilities_for
from engine.operator_time import iso_time
from monitors import heartbeat
from monitors.wechat_status import WechatNumbers, wechat_numbers

UNDELIVERED = (journal.PENDING, journal.RETRYING)


@dataclass
class ChannelNumbers:
    name: str
    listen: str  # configured HOST:PORT
    listening: bool
    open_connections: int
    received: int = 0
    routed: int = 0
    unrouted: int = 0
    failed: int = 0
    rejected: int = 0
    waiting: int = 0  # journaled, not yet transformed
    duplicates: int = 0
    control_id_reused: int = 0
    last_message_at: datetime | None = None
    open_dead_letters: int = 0
    error: str | None = None  # a polled channel's last failure, until a poll succeeds
    state: str = "running"  # running, stopped or paused by an operator (engine/channel_control.py)


@dataclass
class RouteNumbers:
    name: str
    channels: list[str]
    destinations: list[str]
    received: int = 0  # messages the route took: routed, or its mapping failed on them
    routed: int = 0
    failed: int = 0  # dead letters ever made on this route (transform or delivery), open or not
    last_message_at: datetime | None = None
    open_dead_letters: int = 0


@dataclass
class DestinationNumbers:
    name: str
    delivered: int = 0
    backlog: int = 0  # deliveries pending or waiting for a retry (journal)
    queue_depth: int | None = None  # messages in the broker's queues (RabbitMQ only)
    oldest_undelivered_at: datetime | None = None
    oldest_undelivered_age_s: float | None = None
    open_dead_letters: int = 0


@dataclass
class ProcessNumbers:
    host: str
    pid: int
    roles: list[str]
    started_at: datetime
    heartbeat_at: datetime
    alive: bool
    listeners: list[str]


@dataclass
class EngineStatus:
    checked_at: datetime
    journal: str
    broker: str
    ok: bool = True
    problems: list[str] = field(default_factory=list)  # problem keys with their subject
    processes: list[ProcessNumbers] = field(default_factory=list)
    channels: list[ChannelNumbers] = field(default_factory=list)
    routes: list[RouteNumbers] = field(default_factory=list)
    destinations: list[DestinationNumbers] = field(default_factory=list)
    wechat: list[WechatNumbers] = field(default_factory=list)

    def problem(self, key: str, subject: str = "") -> None:
        self.ok = False
        self.problems.append(f"{key}:{subject}" if subject else key)

    def to_json(self, tz: tzinfo) -> dict[str, Any]:
        """Plain JSON types, times in ISO 8601 in the zone `tz` (`engine.timezone`) with its offset."""
        return _jsonable(asdict(self), tz)


def _jsonable(value: Any, tz: tzinfo) -> Any:
    if isinstance(value, datetime):
        return iso_time(value, tz)
    if isinstance(value, dict):
        return {k: _jsonable(v, tz) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, tz) for v in value]
    return value


class Unreachable(Exception):
    """A service the status needs does not answer: `what` and its masked URL."""

    def __init__(self, what: str, url: str, error: BaseException) -> None:
        self.what, self.url = what, masked_url(url)
        self.error = " ".join(str(getattr(error, "orig", None) or error).split())[:200]
        super().__init__(f"{what} {self.url}: {self.error}")


def collect(settings: Settings, now: datetime | None = None) -> EngineStatus:
    """Everything `status` shows. Raises `Unreachable` when the journal database is away;
    a store or broker that does not answer is a problem in the result."""
    now = now or datetime.now(UTC)
    eng = settings.engine
    status = EngineStatus(now, masked_url(eng.database), masked_url(eng.broker))
    db = make_engine(eng.database)
    try:
        try:
            beats = heartbeat.read_all(db)
            counts = _journal_counts(db)
            holding = channel_control.held(db, now)
        except Exception as exc:
            raise Unreachable("journal", eng.database, exc) from exc
        _processes(status, beats, now)
        _channels(status, settings, beats, counts, now, holding)
        _routes(status, settings, counts)
        _destinations(status, settings, counts, now)
        _stores(status, settings)
        _wechat(status, settings, db, now)
    finally:
        db.dispose()
    return status


def _processes(status: EngineStatus, beats: list[heartbeat.Beat], now: datetime) -> None:
    for b in beats:
        listeners = [f"{x.channel}@{x.host}:{x.port}" for x in b.listeners]
        alive = b.alive(now)
        status.processes.append(
            ProcessNumbers(b.host, b.pid, b.roles, b.started_at, b.heartbeat_at, alive, listeners)
        )
        if not alive:
            status.problem("process_down", f"{b.host}:{b.pid}")
    if not any(p.alive for p in status.processes):
        status.problem("engine_not_running")


def _channels(
    status: EngineStatus,
    settings: Settings,
    beats: list[heartbeat.Beat],
    counts: dict[str, Any],
    now: datetime,
    holding: dict[str, channel_control.Control],
) -> None:
    live = [b for b in beats if b.alive(now)]
    for name, ch in settings.channels.items():
        address = ch.listen_at
        state = channel_control.state_of(name, holding)
        if address is None:
            numbers = _reported(status, name, ch, live, held=state != "running")
        else:
            mine = [x for b in live for x in b.listeners if x.channel == name]
            numbers = ChannelNumbers(
                name=name,
                listen=f"{address[0]}:{address[1]}",
                listening=bool(mine),
                open_connections=sum(x.open_connections for x in mine),
            )
            if not numbers.listening and state == "running":  # held by an operator: not down
                status.problem("channel_not_listening", name)
        numbers.state = state
        for key, n in counts["by_status"].get(name, {}).items():
            if key in (journal.ROUTED, journal.UNROUTED, journal.FAILED, journal.REJECTED):
                setattr(numbers, key, n)
        numbers.waiting = counts["by_status"].get(name, {}).get(journal.RECEIVED, 0)
        numbers.received = sum(counts["by_status"].get(name, {}).values())
        numbers.duplicates = counts["duplicates"].get(name, 0)
        numbers.control_id_reused = counts["reused"].get(name, 0)
        numbers.last_message_at = counts["last"].get(name)
        numbers.open_dead_letters = counts["dead_by_channel"].get(name, 0)
        status.channels.append(numbers)


def _reported(
    status: EngineStatus, name: str, ch: Any, live: list[heartbeat.Beat], *, held: bool
) -> ChannelNumbers:
    """A channel that listens on nothing (file, db_poll): its state as its process reports it
    (`running`, `problem`, `where`)."""
    states = [s for b in live if (s := b.counters.get("sources", {}).get(name))]
    numbers = ChannelNumbers(
        name=name,
        listen=next((s["where"] for s in states if s.get("where")), "-"),
        listening=any(s.get("running") for s in states),
        open_connections=0,
    )
    numbers.error = next((s["problem"] for s in states if s.get("problem")), None)
    if held or not getattr(ch, "enabled", True):
        return numbers  # held by an operator, or switched off in routes.yaml (a db_poll's empty url)
    if numbers.error:
        status.problem("channel_problem", f"{name} ({numbers.error})")
    elif not numbers.listening:
        status.problem("channel_not_running", name)
    return numbers


def _routes(status: EngineStatus, settings: Settings, counts: dict[str, Any]) -> None:
    for r in settings.routes:
        received, last = counts["route_received"].get(r.name, (0, None))
        status.routes.append(
            RouteNumbers(
                r.name,
                list(r.from_),
                list(r.to),
                received=received,
                routed=counts["route_routed"].get(r.name, 0),
                failed=counts["route_failed"].get(r.name, 0),
                last_message_at=last,
                open_dead_letters=counts["dead_by_route"].get(r.name, 0),
            )
        )


def _destinations(status: EngineStatus, settings: Settings, counts: dict[str, Any], now: datetime) -> None:
    eng = settings.engine
    broker = capabilities_for(eng.broker).durable  # the embedded bus lives in the engine process
    depths: dict[str, int] = {}
    if broker:
        try:
            depths = _queue_depths(settings)
        except Exception as exc:
            status.problem("broker_unreachable", f"{masked_url(eng.broker)} ({type(exc).__name__})")
    for name in settings.destinations:
        oldest = counts["oldest_undelivered"].get(name)
        status.destinations.append(
            DestinationNumbers(
                name=name,
                delivered=counts["deliveries"].get(name, {}).get(journal.DELIVERED, 0),
                backlog=sum(counts["deliveries"].get(name, {}).get(s, 0) for s in UNDELIVERED),
                queue_depth=depths.get(name),
                oldest_undelivered_at=oldest,
                oldest_undelivered_age_s=round((now - oldest).total_seconds(), 1) if oldest else None,
                open_dead_letters=counts["dead_by_destination"].get(name, 0),
            )
        )


def _wechat(status: EngineStatus, settings: Settings, db: Engine, now: datetime) -> None:
    """Quota, pause and send outcomes of the `wechat` destinations; a pause is a problem."""
    status.wechat = wechat_numbers(settings, db, now)
    for numbers in status.wechat:
        if numbers.paused_until is not None:
            status.problem("wechat_quota_exhausted", numbers.name)


def _queue_depths(settings: Settings) -> dict[str, int]:
    partitions = {name: getattr(d, "partitions", 1) for name, d in settings.destinations.items()}
    bus = Bus(settings.engine.broker, settings.engine.queue_prefix, partitions)
    try:
        return {name: bus.depth(name) for name in settings.destinations}
    finally:
        bus.close()


def _stores(status: EngineStatus, settings: Settings) -> None:
    """Each destination database other than the journal's answers a trivial query."""
    urls = {d.database_url for d in settings.destinations.values() if d.database_url}
    for url in sorted(urls - {settings.engine.database}):
        store = make_engine(url)
        try:
            with store.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            status.problem("store_unreachable", f"{masked_url(url)} ({type(exc).__name__})")
        finally:
            store.dispose()


def _journal_counts(db: Engine) -> dict[str, Any]:
    m, d, dl = journal.messages, journal.deliveries, dead_letters.dead_letters
    journal.ensure_schema(db)
    dead_letters.ensure_schema(db)
    out: dict[str, Any] = {"by_status": {}, "duplicates": {}, "last": {}, "deliveries": {}}
    with db.connect() as conn:
        for channel, st, n in conn.execute(
            select(m.c.channel, m.c.status, func.count()).group_by(m.c.channel, m.c.status)
        ):
            out["by_status"].setdefault(channel, {})[st] = n
        per_channel = select(m.c.channel, func.sum(m.c.duplicates), func.max(m.c.received_at)).group_by(
            m.c.channel
        )
        for channel, dups, last in conn.execute(per_channel):
            out["duplicates"][channel] = int(dups or 0)
            out["last"][channel] = _aware(last)
        for dest, st, n in conn.execute(
            select(d.c.destination, d.c.status, func.count()).group_by(d.c.destination, d.c.status)
        ):
            out["deliveries"].setdefault(dest, {})[st] = n
        oldest = (
            select(d.c.destination, func.min(m.c.received_at))
            .join(m, m.c.id == d.c.journal_id)
            .where(d.c.status.in_(UNDELIVERED))
            .group_by(d.c.destination)
        )
        out["oldest_undelivered"] = {dest: _aware(t) for dest, t in conn.execute(oldest)}
        open_rows = dl.c.status == dead_letters.OPEN
        for key, column in (
            ("channel", dl.c.channel),
            ("route", dl.c.route),
            ("destination", dl.c.destination),
        ):
            query = select(column, func.count()).where(open_rows).group_by(column)
            out[f"dead_by_{key}"] = {k: n for k, n in conn.execute(query) if k}
        out.update(_route_counts(conn))
    out["reused"] = journal.count_reused_by_channel(db)
    return out


def _route_counts(conn: Connection) -> dict[str, Any]:
    """Per route: messages routed (journal_routes), dead letters made (any status), and the
    messages it took (routed or failed in its mapping) with the newest one's time."""
    m, taken, dl = journal.messages, journal.routes_taken, dead_letters.dead_letters
    routed = select(taken.c.route, func.count()).group_by(taken.c.route)
    failed = select(dl.c.route, func.count()).where(dl.c.route != "").group_by(dl.c.route)
    took = union(
        select(taken.c.journal_id, taken.c.route),
        select(dl.c.journal_id, dl.c.route).where(
            (dl.c.stage == dead_letters.TRANSFORM) & (dl.c.route != "")
        ),
    ).subquery()
    received = (
        select(took.c.route, func.count(), func.max(m.c.received_at))
        .join(m, m.c.id == took.c.journal_id)
        .group_by(took.c.route)
    )
    return {
        "route_routed": {key: value for key, value in conn.execute(routed)},
        "route_failed": {key: value for key, value in conn.execute(failed)},
        "route_received": {r: (n, _aware(last)) for r, n, last in conn.execute(received)},
    }


def _aware(value: datetime | str | None) -> datetime | None:
    """Aggregates bypass the column type on SQLite: a naive UTC datetime or its text."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def this_host() -> str:
    return os.uname().nodename
