"""Stop, start and pause a channel: the operator's intent, kept in the engine database.

`stop` closes the channel's source (an MLLP listener closes its port, so senders get
"connection refused" and keep their messages; a polled channel stops polling). `pause`
is a stop that ends by itself at `until`. `start` ends either. The intent is a row in
`channel_controls`, not a flag in one process: every engine process that runs the
channel's source obeys it, an engine (re)started later does not open it, and a live
reload does not either. Messages already journaled go on being transformed and
delivered: only the intake stops.

The CLI (engine/channel_command.py) and the dashboard write the intent and the audit
entry with `request`, then ask the running processes (an operator request of scope
`all`) to apply it at once; each ingest process also looks at the table twice a second
(`ChannelControl`), which is what ends a pause and what a process that missed the
request relies on.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import Column, Engine, MetaData, String, Table, delete, insert, select

from core.clock import now_utc
from core.database import RowId, UtcDateTime
from deadletter import audit
from deadletter.audit import Actor
from engine import operator_requests as ops

if TYPE_CHECKING:
    from engine.runtime import EngineRuntime

log = structlog.get_logger("engine.channel_control")

RUNNING, STOPPED, PAUSED = "running", "stopped", "paused"
STOP, START, PAUSE = "stop", "start", "pause"
ACTIONS = (STOP, START, PAUSE)
KIND = "channel"
"""The operator request kind every ingest process answers."""
LOOK_EVERY = 0.5
"""Seconds between looks at the table: how late a pause ends at most (plus a start)."""
STEP_TIMEOUT = 60.0

metadata = MetaData()

controls = Table(
    "channel_controls",
    metadata,
    Column("channel", String(200), primary_key=True),
    Column("state", String(16), nullable=False),  # stopped or paused (running: no row)
    Column("until", UtcDateTime()),  # a pause's end
    Column("actor", String(128), nullable=False),
    Column("source", String(128), nullable=False),  # `cli:OS_USER` or `web:ADDRESS`
    Column("at", UtcDateTime(), nullable=False),
    Column("audit_id", RowId),
)


@dataclass(frozen=True, slots=True)
class Control:
    """A channel held by an operator: stopped, or paused until `until`."""

    channel: str
    state: str
    until: datetime | None
    actor: str
    source: str  # where the operator acted from: `cli:OS_USER` or `web:ADDRESS`
    at: datetime

    @property
    def by(self) -> str:
        return f"{self.actor} ({self.source})"

    def holds(self, now: datetime) -> bool:
        return self.state == STOPPED or (self.until is not None and self.until > now)


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def held(engine: Engine, now: datetime | None = None) -> dict[str, Control]:
    """The channels that must not run now, by name (a pause whose time is up is not one)."""
    now = now or now_utc()
    ensure_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(controls)).mappings().all()
    found = (Control(r["channel"], r["state"], r["until"], r["actor"], r["source"], r["at"]) for r in rows)
    return {c.channel: c for c in found if c.holds(now)}


def state_of(name: str, holding: Mapping[str, Control]) -> str:
    control = holding.get(name)
    return control.state if control is not None else RUNNING


def request(
    engine: Engine, channel: str, action: str, who: Actor, *, pause_for: float | None = None
) -> tuple[int, int]:
    """Record the operator's intent and its audit entry, then ask the running processes to
    apply it; returns (audit id, request id)."""
    if action not in ACTIONS:
        raise ValueError(f"not a channel action: {action}")
    ensure_schema(engine)
    audit.ensure_schema(engine)
    now = now_utc()
    until = now + timedelta(seconds=pause_for) if action == PAUSE and pause_for else None
    detail: dict[str, Any] = {"channel": channel}
    if until is not None:
        detail["until"] = until.isoformat()
    audit_id = audit.write_audit(
        engine, actor=who, action=f"channel_{action}", target=channel, count=1, detail=detail
    )
    with engine.begin() as conn:
        conn.execute(delete(controls).where(controls.c.channel == channel))
        if action != START:
            state = STOPPED if action == STOP else PAUSED
            conn.execute(
                insert(controls).values(
                    channel=channel,
                    state=state,
                    until=until,
                    actor=who.name[:128],
                    source=who.origin,
                    at=now,
                    audit_id=audit_id,
                )
            )
    params = {"channel": channel, "action": action, "audit_id": audit_id}
    rid = ops.submit(engine, KIND, params, actor=who.name, os_user=who.os_user, scope=ops.ALL)
    return audit_id, rid


class ChannelControl:
    """In an ingest process: keeps its sources as the table says, twice a second and at once
    on a `channel` request. It starts again only the channels it stopped itself."""

    def __init__(self, runtime: EngineRuntime, loop: asyncio.AbstractEventLoop) -> None:
        self.runtime = runtime
        self.loop = loop
        self.stopped_here: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def engine(self) -> Engine:
        assert self.runtime.journal_engine is not None
        return self.runtime.journal_engine

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="channel-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=STEP_TIMEOUT)

    def _run(self) -> None:
        while not self._stop.wait(LOOK_EVERY):
            try:
                self.apply()
            except Exception as exc:  # the database is away: keep the sources as they are
                log.warning("channel_controls_unreadable", error=type(exc).__name__)

    def handle_request(self, params: dict[str, Any], request: ops.Request) -> dict[str, Any]:
        """The `channel` operator request: apply the table now, say what this process runs."""
        self.apply()
        name = params["channel"]
        if any(s.name == name for s in self.runtime.sources):
            return {"channel": name, "state": RUNNING}
        return {"channel": name, "state": state_of(name, held(self.engine)) if name else STOPPED}

    def apply(self) -> None:
        holding = held(self.engine)
        running = {s.name for s in self.runtime.sources}
        if not (running & set(holding) or self.stopped_here - set(holding)):
            return  # nothing to change: the loop is left alone
        with self._lock:
            asyncio.run_coroutine_threadsafe(self._switch(holding), self.loop).result(STEP_TIMEOUT)

    async def _switch(self, holding: Mapping[str, Control]) -> None:
        rt = self.runtime
        leaving = [s for s in rt.sources if s.name in holding]
        for source in leaving:
            rt.sources.remove(source)
            self.stopped_here.add(source.name)
        await asyncio.gather(*(s.stop(STEP_TIMEOUT / 2) for s in leaving), return_exceptions=True)
        for source in leaving:
            control = holding[source.name]
            log.info("channel_stopped", channel=source.name, state=control.state, actor=control.actor)
        running = {s.name for s in rt.sources}
        for name in sorted(self.stopped_here - set(holding)):
            self.stopped_here.discard(name)
            channel = rt.settings.channels.get(name)
            if channel is None or name in running:  # removed by a reload meanwhile
                continue
            source = rt.build_source(rt.channel_config(name, channel, rt.settings), channel)
            try:
                await source.start()
            except Exception as exc:  # its address taken meanwhile: say so, try at the next look
                log.error("channel_not_started", channel=name, error=str(exc)[:200])
                self.stopped_here.add(name)
                continue
            rt.sources.append(source)
            log.info("channel_started", channel=name)
