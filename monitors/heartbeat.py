"""Heartbeat rows: what each running engine process is, written to the engine's database.

Listening sockets, open connections and the roles a process runs exist only inside that
process. Each `mch-engine run` writes one row here every `INTERVAL` seconds, so `status`
(and the HTTP app) can read them from any process on any backend without the bus. A row
whose heartbeat is older than `STALE_AFTER` is a process that is down. A clean stop removes
the row; a process that starts replaces the stale rows of its predecessor (same host and
roles), so a crash that was followed by a restart is not reported for ever.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Column, Engine, Integer, MetaData, String, Table, delete, select

from core.database import UtcDateTime
from core.upsert import insert_for

INTERVAL = 2.0  # seconds between two heartbeats of one process
STALE_AFTER = timedelta(seconds=15)  # a process silent for longer is down

metadata = MetaData()

engine_processes = Table(
    "engine_processes",
    metadata,
    Column("process_id", String(200), primary_key=True),
    Column("host", String(200), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("roles", JSON, nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("heartbeat_at", UtcDateTime(), nullable=False),
    # [{"channel", "host", "port", "open_connections"}]
    Column("listeners", JSON, nullable=False),
    # {"channels": {name: {received, accepted, rejected, duplicates, ...}}, "transform": {...}}
    Column("counters", JSON, nullable=False),
)


@dataclass(frozen=True)
class Listener:
    channel: str
    host: str
    port: int
    open_connections: int = 0


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

    @property
    def process_id(self) -> str:
        return f"{self.host}:{self.pid}:{self.started_at.timestamp():.0f}"

    def alive(self, now: datetime) -> bool:
        return now - self.heartbeat_at <= STALE_AFTER


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def write(engine: Engine, beat: Beat) -> None:
    """Insert or refresh this process's row."""
    row = {
        "process_id": beat.process_id,
        "host": beat.host,
        "pid": beat.pid,
        "roles": sorted(beat.roles),
        "started_at": beat.started_at,
        "heartbeat_at": beat.heartbeat_at,
        "listeners": [vars(listener) for listener in beat.listeners],
        "counters": beat.counters,
    }
    with engine.begin() as conn:
        stmt = insert_for(conn, engine_processes)
        refreshed = {k: stmt.excluded[k] for k in ("heartbeat_at", "listeners", "counters")}
        conn.execute(stmt.on_conflict_do_update(index_elements=["process_id"], set_=refreshed), row)


def replace_predecessors(engine: Engine, beat: Beat) -> int:
    """Remove stale rows of the same host and roles: this process took their place."""
    removed = 0
    for old in read_all(engine):
        same = old.host == beat.host and old.roles == sorted(beat.roles)
        if same and old.process_id != beat.process_id and not old.alive(beat.heartbeat_at):
            removed += _delete(engine, old.process_id)
    return removed


def remove(engine: Engine, beat: Beat) -> None:
    """A clean stop: the process is gone, not down."""
    _delete(engine, beat.process_id)


def _delete(engine: Engine, process_id: str) -> int:
    with engine.begin() as conn:
        return conn.execute(
            delete(engine_processes).where(engine_processes.c.process_id == process_id)
        ).rowcount


def read_all(engine: Engine) -> list[Beat]:
    """Every process row, oldest start first (an empty list before any engine ever ran)."""
    ensure_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(engine_processes).order_by(engine_processes.c.started_at)).mappings()
        return [
            Beat(
                host=r["host"],
                pid=r["pid"],
                roles=list(r["roles"]),
                started_at=r["started_at"],
                heartbeat_at=r["heartbeat_at"],
                listeners=[Listener(**listener) for listener in r["listeners"]],
                counters=dict(r["counters"]),
            )
            for r in rows
        ]
