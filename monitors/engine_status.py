"""The engine's numbers, built once: `mch-engine status`, the HTTP `/status`, and later the
dashboard and `/metrics` all read `collect()`.

Persistent facts (what was received, routed, failed, what waits, dead letters) come from the
journal database; live facts (listening, open connections, roles) from the heartbeat rows
the running processes write (engine/heartbeat.py); queue depth on RabbitMQ from the broker.
Nothing here holds patient data: counts, times, and names of channels, routes, destinations.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text, union

from core.database import make_engine
from core.masking import masked_url
from core.settings import Settings
from deadletter import store as dead_letters
from engine import channel_control, heartbeat, journal, leadership, retention_totals
from engine.bus import Bus, capabilities_for
from engine.operator_time import iso_time
from engine.retention_totals import RetentionTotals
from monitors import recent_window
from monitors.recent_window import aware as _aware
from monitors.wechat_status import WechatNumbers, wechat_numbers

UNDELIVERED = (journal.PENDING, journal.RETRYING)


@dataclass
class ChannelNumbers:
    name: str
    listen: str  # configured HOST:PORT
    listening: bool
    open_connections: int
    # connections the listener closed at once or cut, by reason: not_allowed, over_limit,
    # tls_failed, frame_deadline (since each process started)
    connections_closed: dict[str, int] = field(default_factory=dict)
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
    rate_1m: float = 0.0  # messages received per minute, over the last minute
    rate_15m: float = 0.0  # ... and over the last 15 minutes
    ack_latency_p50_s: float | None = None  # frame arrival to ACK, recent window
    ack_latency_p95_s: float | None = None
    ack_latency_p99_s: float | None = None
    poll_lag_s: float | None = None  # db_poll: age of the last successful poll
    silent_for_s: float | None = None  # now - last_message_at
    type: str = ""  # mllp, db_poll, file, ...
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
    retrying: int = 0  # deliveries waiting for their next attempt
    dead_lettered: int = 0  # dead letters ever made for this destination, open or not
    delivered_rate_1m: float = 0.0
    delivery_latency_p50_s: float | None = None  # receipt to delivered, recent window
    delivery_latency_p95_s: float | None = None
    delivery_latency_p99_s: float | None = None


@dataclass
class ProcessNumbers:
    host: str
    pid: int
    roles: list[str]
    started_at: datetime
    heartbeat_at: datetime
    alive: bool
    listeners: list[str]
    leadership: str | None = None  # "leader" or "standby" with two servers (engine/leadership.py)


@dataclass
class LeaderNumbers:
    """Two servers: the lock's name and the live process leading (None: none leads)."""

    name: str
    process: str | None = None  # HOST:PID
    since: datetime | None = None


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
    journal_reachable: bool = True
    broker_reachable: bool | None = None  # None: the embedded bus, inside the engine process
    stores_reachable: dict[str, bool] = field(default_factory=dict)  # masked URL -> answers
    disk_free_bytes: int | None = None  # where the embedded (SQLite) journal lives
    disk_free_ratio: float | None = None
    dead_letters_open: int = 0
    dead_letters_total: int = 0
    transform_dead_letters_open: int = 0  # a route's mapping failed: no destination
    transform_dead_letters_total: int = 0
    wechat: list[WechatNumbers] = field(default_factory=list)
    leader: LeaderNumbers | None = None  # with engine.leadership.enabled
    retention: RetentionTotals = field(default_factory=RetentionTotals)  # the last pass, totals

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
            counts = _journal_counts(db, now)
            holding = channel_control.held(db, now)
            status.retention = retention_totals.read(db)
        except Exception as exc:
            raise Unreachable("journal", eng.database, exc) from exc
        _processes(status, beats, now)
        if eng.leadership.enabled:
            _leadership(status, eng.leadership.name, db)
        _channels(status, settings, beats, counts, now, holding)
        _routes(status, settings, counts)
        _destinations(status, settings, counts, now)
        _stores(status, settings)
        _disk(status, db)
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


def _leadership(status: EngineStatus, name: str, db: Engine) -> None:
    """Which live process leads and which wait as standby; none leading is a problem (no
    message is taken in). The leader row names the last process that took the lock: it
    leads while its heartbeat is alive."""
    found = leadership.read_leader(db, name)
    status.leader = LeaderNumbers(name)
    for p in (p for p in status.processes if p.alive):
        leads = found is not None and found.process == f"{p.host}:{p.pid}"
        p.leadership = "leader" if leads else "standby"
        if leads and found is not None:
            status.leader.process, status.leader.since = found.process, found.since
    if status.leader.process is None:
        status.problem("no_leader", name)


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
            numbers = _reported(status, name, ch, live, now, held=state != "running")
        else:
            mine = [x for b in live for x in b.listeners if x.channel == name]
            numbers = ChannelNumbers(
                name=name,
                listen=f"{address[0]}:{address[1]}",
                listening=bool(mine),
                open_connections=sum(x.open_connections for x in mine),
            )
            for x in mine:
                for reason, n in x.closed.items():
                    numbers.connections_closed[reason] = numbers.connections_closed.get(reason, 0) + n
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
        numbers.type = ch.type
        _recent_channel(numbers, counts["recent"], now)
        status.channels.append(numbers)


def _recent_channel(numbers: ChannelNumbers, recent: recent_window.Recent, now: datetime) -> None:
    name = numbers.name
    numbers.rate_1m = recent.per_minute(recent.received_1m.get(name, 0), 1)
    numbers.rate_15m = recent.per_minute(recent.received_15m.get(name, 0), 15)
    ack = recent.ack.get(name, {})
    numbers.ack_latency_p50_s, numbers.ack_latency_p95_s, numbers.ack_latency_p99_s = (
        ack.get(q) for q in recent_window.QUANTILES
    )
    if numbers.last_message_at is not None:
        numbers.silent_for_s = round(max((now - numbers.last_message_at).total_seconds(), 0.0), 1)


def _reported(
    status: EngineStatus, name: str, ch: Any, live: list[heartbeat.Beat], now: datetime, *, held: bool
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
    polled = [_aware(s["last_poll_at"]) for s in states if s.get("last_poll_at")]
    if polled:
        numbers.poll_lag_s = round((now - max(t for t in polled if t)).total_seconds(), 1)
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
        status.broker_reachable = True
        try:
            depths = queue_depths(settings)
        except Exception as exc:
            status.broker_reachable = False
            status.problem("broker_unreachable", f"{masked_url(eng.broker)} ({type(exc).__name__})")
    recent = counts["recent"]
    for name in settings.destinations:
        oldest = counts["oldest_undelivered"].get(name)
        latency = recent.delivery.get(name, {})
        p50, p95, p99 = (latency.get(q) for q in recent_window.QUANTILES)
        status.destinations.append(
            DestinationNumbers(
                name=name,
                delivered=counts["deliveries"].get(name, {}).get(journal.DELIVERED, 0),
                backlog=sum(counts["deliveries"].get(name, {}).get(s, 0) for s in UNDELIVERED),
                queue_depth=depths.get(name),
                oldest_undelivered_at=oldest,
                oldest_undelivered_age_s=round((now - oldest).total_seconds(), 1) if oldest else None,
                open_dead_letters=counts["dead_by_destination"].get(name, 0),
                retrying=counts["deliveries"].get(name, {}).get(journal.RETRYING, 0),
                dead_lettered=counts["dead_ever_by_destination"].get(name, 0),
                delivered_rate_1m=recent.per_minute(recent.delivered_1m.get(name, 0), 1),
                delivery_latency_p50_s=p50,
                delivery_latency_p95_s=p95,
                delivery_latency_p99_s=p99,
            )
        )
    ever, still_open = counts["dead_ever_by_destination"], counts["dead_open_by_destination"]
    status.dead_letters_open, status.dead_letters_total = sum(still_open.values()), sum(ever.values())
    status.transform_dead_letters_open, status.transform_dead_letters_total = still_open[""], ever[""]


def _wechat(status: EngineStatus, settings: Settings, db: Engine, now: datetime) -> None:
    """Quota, pause and send outcomes of the `wechat` destinations; a pause is a problem."""
    status.wechat = wechat_numbers(settings, db, now)
    for numbers in status.wechat:
        if numbers.paused_until is not None:
            status.problem("wechat_quota_exhausted", numbers.name)


def queue_depths(settings: Settings) -> dict[str, int]:
    partitions = {name: getattr(d, "partitions", 1) for name, d in settings.destinations.items()}
    bus = Bus(settings.engine.broker, settings.engine.queue_prefix, partitions)
    try:
        return {name: bus.depth(name) for name in settings.destinations}
    finally:
        bus.close()


def _stores(status: EngineStatus, settings: Settings) -> None:
    for url, error in store_errors(settings).items():
        status.stores_reachable[url] = error is None
        if error is not None:
            status.problem("store_unreachable", f"{url} ({error})")


def store_errors(settings: Settings) -> dict[str, str | None]:
    """Each destination database other than the journal's, by masked URL: None when it
    answers a trivial query, else the kind of error."""
    out: dict[str, str | None] = {}
    urls = {d.database_url for d in settings.destinations.values() if d.database_url}
    for url in sorted(urls - {settings.engine.database}):
        store = make_engine(url)
        out[masked_url(url)] = None
        try:
            with store.connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:
            out[masked_url(url)] = type(exc).__name__
        finally:
            store.dispose()
    return out


def _disk(status: EngineStatus, db: Engine) -> None:
    """Free space on the file system of the embedded journal (a server database: None)."""
    path = db.url.database if db.dialect.name == "sqlite" else None
    if not path or path == ":memory:":
        return
    try:
        usage = shutil.disk_usage(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return
    status.disk_free_bytes = usage.free
    status.disk_free_ratio = round(usage.free / usage.total, 4) if usage.total else None


def _journal_counts(db: Engine, now: datetime) -> dict[str, Any]:
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
        ever = select(dl.c.destination, dl.c.status, func.count()).group_by(dl.c.destination, dl.c.status)
        ever_by: Counter[str] = Counter()
        open_by: Counter[str] = Counter()
        for dest, st, n in conn.execute(ever):
            ever_by[dest or ""] += n
            open_by[dest or ""] += n if st == dead_letters.OPEN else 0
        out["dead_ever_by_destination"], out["dead_open_by_destination"] = ever_by, open_by
        out["recent"] = recent_window.read(conn, now)
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
