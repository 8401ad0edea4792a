"""One row per engine process in the engine's database (`engine_processes`), one writer.

Listening sockets, open connections, the roles a process runs and the configuration it
loaded exist only inside that process. Each running engine keeps one `Beat` and writes it
here every `INTERVAL` seconds from a thread of its own (so a slow database never holds up
an ACK), and at once after a start or a reload. Readers: `status` and the monitors (what
runs, listens, counts), `check --diff` and `reload` (which process runs which
configuration: `snapshot`, engine/loaded_config.py).

A row whose heartbeat is older than `STALE_AFTER` is a process that is down. A clean stop
marks the row stopped (its snapshot stays, for `check --diff` against the last run); a
process that starts replaces the stopped or stale rows of its predecessor (same host and
roles), so a crash followed by a restart is not reported for ever.
"""

from __future__ import annotations

import os
import socket
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import JSON, Column, Engine, Integer, MetaData, String, Table, delete, inspect, select, update
from sqlalchemy.schema import CreateColumn

from core.clock import now_utc
from core.database import UtcDateTime, once_per_database
from core.upsert import insert_for

log = structlog.get_logger("engine.heartbeat")

INTERVAL = 2.0  # seconds between two heartbeats of one process
STALE_AFTER = timedelta(seconds=15)  # a process silent for longer is down
FORGET = timedelta(days=30)  # rows not seen for this long are deleted when a process starts

metadata = MetaData()

engine_processes = Table(
    "engine_processes",
    metadata,
    Column("process_id", String(200), primary_key=True),
    Column("process", String(200)),  # HOST:PID, as operator requests and `reload` name it
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("roles", JSON, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    # [{"channel", "host", "port", "open_connections", "closed"}]
    Column("listeners", JSON, nullable=False),
    # {"channels": {name: {received, accepted, rejected, duplicates, ...}}, "transform": {...}}
    Column("counters", JSON, nullable=False),
    Column("loaded_at", UtcDateTime()),  # when it (re)loaded `snapshot`
    Column("snapshot", JSON),  # engine/loaded_config.py `snapshot`: secrets as fingerprints
    Column("stopped_at", UtcDateTime()),  # a clean stop
)
_ADDED = ("process", "loaded_at", "snapshot", "stopped_at")  # not in the table's first version


@dataclass(frozen=True)
class Listener:
    channel: str
    host: str
    port: int
    open_connections: int = 0
    # Connections the listener's edge closed, by reason (channels/mllp/source.py MllpCounters.closed).
    closed: dict[str, int] = field(default_factory=dict)


@dataclass
class Beat:
    """One process's facts at one moment."""

    host: str
    pid: int
    roles: list[str]
    started_at: datetime
    heartbeat_at: datetime
    listeners: list[Listener] = field(default_factory=list)
    counters: dict[str, Any] = field(default_factory=dict)
    loaded_at: datetime | None = None
    snapshot: dict[str, Any] | None = None
    stopped_at: datetime | None = None

    @property
    def process_id(self) -> str:
        return f"{self.host}:{self.pid}:{self.started_at.timestamp():.0f}"

    @property
    def process(self) -> str:
        return f"{self.host}:{self.pid}"

    def alive(self, now: datetime) -> bool:
        return self.stopped_at is None and now - self.heartbeat_at <= STALE_AFTER


def this_host() -> str:
    return socket.gethostname()


def this_process(roles: list[str] | set[str] | frozenset[str]) -> Beat:
    now = now_utc()
    return Beat(this_host(), os.getpid(), sorted(roles), now, now)


def ensure_schema(engine: Engine) -> None:
    """Create the table, or add what an older version's table lacks, once per database and
    process (every `status`, scrape and alert look reads the table)."""
    once_per_database(engine, engine_processes.name, _create_or_upgrade)


def _create_or_upgrade(engine: Engine) -> None:
    metadata.create_all(engine)
    with engine.begin() as conn:
        columns = {c["name"] for c in inspect(conn).get_columns(engine_processes.name)}
        for name in _ADDED:
            if name not in columns:
                column = CreateColumn(engine_processes.c[name]).compile(dialect=conn.dialect)
                conn.exec_driver_sql(f"ALTER TABLE {engine_processes.name} ADD COLUMN {column}")


def write(engine: Engine, beat: Beat) -> None:
    """Insert or refresh this process's row."""
    row = {
        "process_id": beat.process_id,
        "process": beat.process,
        "host": beat.host,
        "pid": beat.pid,
        "roles": sorted(beat.roles),
        "started_at": beat.started_at,
        "heartbeat_at": beat.heartbeat_at,
        "listeners": [vars(listener) for listener in beat.listeners],
        "counters": beat.counters,
        "loaded_at": beat.loaded_at,
        "snapshot": beat.snapshot,
        "stopped_at": beat.stopped_at,
    }
    refreshed = ("heartbeat_at", "listeners", "counters", "loaded_at", "snapshot", "stopped_at")
    with engine.begin() as conn:
        stmt = insert_for(conn, engine_processes)
        update_set = {k: stmt.excluded[k] for k in refreshed}
        conn.execute(stmt.on_conflict_do_update(index_elements=["process_id"], set_=update_set), row)


def replace_predecessors(engine: Engine, beat: Beat) -> int:
    """Remove the stopped or stale rows of the same host and roles (this process took their
    place), and any row not seen for `FORGET`."""
    removed = 0
    for old in read_all(engine, stopped=True):
        same = old.host == beat.host and old.roles == sorted(beat.roles)
        gone = not old.alive(beat.heartbeat_at)
        forgotten = beat.heartbeat_at - old.heartbeat_at > FORGET
        if old.process_id != beat.process_id and gone and (same or forgotten):
            with engine.begin() as conn:
                query = delete(engine_processes).where(engine_processes.c.process_id == old.process_id)
                removed += conn.execute(query).rowcount
    return removed


def mark_stopped(engine: Engine, beat: Beat) -> None:
    """A clean stop: the process is gone, not down; what it loaded stays readable."""
    beat.stopped_at = now_utc()
    with engine.begin() as conn:
        conn.execute(
            update(engine_processes)
            .where(engine_processes.c.process_id == beat.process_id)
            .values(stopped_at=beat.stopped_at)
        )


def read_all(engine: Engine, *, stopped: bool = False) -> list[Beat]:
    """Every process row, oldest start first (an empty list before any engine ever ran);
    those stopped cleanly only with `stopped`."""
    ensure_schema(engine)
    query = select(engine_processes).order_by(engine_processes.c.started_at)
    if not stopped:
        query = query.where(engine_processes.c.stopped_at.is_(None))
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        Beat(
            host=r["host"],
            pid=r["pid"],
            roles=list(r["roles"]),
            started_at=r["started_at"],
            heartbeat_at=r["heartbeat_at"],
            listeners=[Listener(**listener) for listener in r["listeners"]],
            counters=dict(r["counters"]),
            loaded_at=r["loaded_at"],
            snapshot=r["snapshot"],
            stopped_at=r["stopped_at"],
        )
        for r in rows
    ]


class Heartbeat:
    """Writes this process's `beat` every `interval` seconds from its own thread, and marks
    it stopped on `stop`. The event loop updates the beat's live facts (listeners, counters,
    monitors/process_monitor.py) by replacing them whole; this thread only writes them."""

    def __init__(self, engine: Engine, beat: Beat, interval: float = INTERVAL) -> None:
        self.engine = engine
        self.beat = beat
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> None:
        ensure_schema(self.engine)
        self.write_now()
        replace_predecessors(self.engine, self.beat)
        self._thread.start()

    def write_now(self) -> None:
        """One heartbeat now (a failure is logged: the row goes stale, which is the truth)."""
        self.beat.heartbeat_at = now_utc()
        try:
            write(self.engine, self.beat)
        except Exception as exc:
            log.error("heartbeat_not_written", error=type(exc).__name__)

    def loaded(self, snapshot: dict[str, Any]) -> None:
        """This process (re)loaded its configuration: `snapshot` (engine/loaded_config.py)."""
        self.beat.snapshot, self.beat.loaded_at = snapshot, now_utc()
        self.write_now()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        try:
            mark_stopped(self.engine, self.beat)
        except Exception as exc:  # the database is away: the row goes stale by itself
            log.warning("heartbeat_stop_unwritten", error=type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.write_now()
