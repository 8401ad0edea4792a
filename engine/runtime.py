"""Builds the running engine from settings and runs its roles.

Roles (all in one process by default): `ingest` (MLLP sources and the journal
writer), `transform` (parse, route, map, publish) and `deliver` (destination
consumers). A site may run roles in separate processes sharing one broker and
one database; with the embedded `memory://` bus they must share a process, or
`ingest` runs alone and the journaled messages are processed at the next full start
(a store maintenance window, say). A transform process without ingest reads new
messages from the journal (engine/transform_feed.py), several such processes share the
journal by id (`shard`); deliver processes can split a destination's partitions
between them (`partitions`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import Engine

from core import connectors
from core.database import make_engine
from core.errors import StartupError
from core.settings import Channel, Destination, Settings
from deadletter import audit
from deadletter import store as dead_letters
from deadletter.policy import RetryPolicy
from engine import channel_control, journal, leadership
from engine.bus import Bus
from engine.channel_control import ChannelControl
from engine.delivery import DeliveryWorker
from engine.heartbeat import Heartbeat, this_process
from engine.leadership import EXIT_STEPPED_DOWN, Leadership
from engine.live_reload import LiveReload, compile_routes
from engine.operator_requests import Handler, RequestPoller
from engine.pipeline import TransformWorker
from engine.retention import Pruner
from engine.router import Router
from engine.transform_feed import TransformFeed

log = structlog.get_logger("engine.runtime")

ALL_ROLES = frozenset({"ingest", "transform", "deliver"})


@dataclass
class EngineRuntime:
    settings: Settings
    roles: frozenset[str] = ALL_ROLES
    partitions: frozenset[int] | None = None  # deliver only these partitions (None: all)
    shard: tuple[int, int] | None = None  # transform only journal ids ≡ i (mod n)
    sources: list[Any] = field(default_factory=list)
    journal_engine: Engine | None = None
    writer: journal.JournalWriter | None = None
    transform: TransformWorker | None = None
    workers: list[DeliveryWorker] = field(default_factory=list)
    feed: TransformFeed | None = None
    requests: RequestPoller | None = None
    control: ChannelControl | None = None
    reloader: LiveReload | None = None
    heartbeat: Heartbeat | None = None
    leadership: Leadership | None = None  # with engine.leadership.enabled
    leading: bool = False  # start_leading ran: this server runs sources, transform, schedulers
    on_step_down: Callable[[], None] | None = None  # stops the process (the CLI's stop)
    exit_code: int = 0  # EXIT_STEPPED_DOWN once leadership was lost
    _engines: dict[str, Engine] = field(default_factory=dict)
    _leading_jobs: list[tuple[Callable[[], None], Callable[[], None]]] = field(default_factory=list)
    _durable: bool = False
    _compiled: tuple[Settings, Router] | None = None
    _loop: asyncio.AbstractEventLoop | None = None

    def engine_for(self, url: str) -> Engine:
        if url not in self._engines:
            self._engines[url] = make_engine(url)
        return self._engines[url]

    def bus(self) -> Bus:
        eng = self.settings.engine
        partitions = {name: getattr(d, "partitions", 1) for name, d in self.settings.destinations.items()}
        return Bus(eng.broker, eng.queue_prefix, partitions)

    async def start(self) -> None:
        """What every server runs (schemas, destinations, deliver workers, heartbeat, operator
        requests); then what runs once, at once, or on the server that takes leadership
        (engine/leadership.py)."""
        s = self.settings
        if s.engine.broker.startswith("memory://") and self.roles not in (ALL_ROLES, {"ingest"}):
            raise StartupError(
                "the embedded memory:// bus needs all roles in one process (or ingest alone: "
                "messages wait in the journal until the next full start)"
            )
        refusal = leadership.refusal(s)
        if refusal is not None:
            raise StartupError(refusal)
        self.journal_engine = self.engine_for(s.engine.database)
        journal.ensure_schema(self.journal_engine)
        dead_letters.ensure_schema(self.journal_engine)
        audit.ensure_schema(self.journal_engine)
        channel_control.ensure_schema(self.journal_engine)
        leadership.ensure_schema(self.journal_engine)
        compiled = compile_routes(s)
        self._compiled = (s, compiled.router)
        destinations = {name: d for name, d in s.destinations.items()}
        for name, d in destinations.items():
            kind = connectors.destination_type(d.type)
            if kind.prepare is not None:
                kind.prepare(name, d, self)
        probe = self.bus()
        for name in destinations:
            probe.declare(name)
        self._durable = probe.capabilities.durable
        probe_lanes = {name: probe.lanes(name) for name in destinations}
        probe.close()

        self._loop = asyncio.get_running_loop()
        if "deliver" in self.roles:
            for name, d in destinations.items():
                self.start_destination(name, d, probe_lanes[name])
        self.reloader = LiveReload(self, self._loop, compiled.files)
        snap = self.reloader.loaded
        self.heartbeat = Heartbeat(self.journal_engine, this_process(self.roles))
        self.heartbeat.beat.snapshot, self.heartbeat.beat.loaded_at = snap, self.heartbeat.beat.started_at
        self.heartbeat.start()
        self.requests = RequestPoller(self.journal_engine, self.request_handlers())
        self.requests.start()
        lead = s.engine.leadership
        if not lead.enabled:
            await self.start_leading()
        else:
            self.leadership = Leadership(
                s.engine.database,
                lead.name,
                lead.check_every,
                on_acquired=self._acquired,
                on_lost=self._lost,
            )
            self.leadership.start()
            log.info("engine_standby", roles=sorted(self.roles), lock=lead.name)
        log.info("engine_started", roles=sorted(self.roles), channels=len(self.sources))

    async def start_leading(self) -> None:
        """What must run once of two servers: the transform stage and its feed, the journal
        writer, the sources, channel control and the schedulers (`when_leading`)."""
        s = self.settings
        assert self.journal_engine is not None
        if "transform" in self.roles:
            # One transform process of several does it, so none counts a message twice.
            recovered = 0
            if self.shard is None or self.shard[0] == 0:
                recovered = dead_letters.recover_transform_failures(self.journal_engine)
            if recovered:
                log.warning("failed_messages_dead_lettered", count=recovered)
            strict = frozenset(name for name, ch in s.channels.items() if ch.checks_structure)
            rows = frozenset(name for name, ch in s.channels.items() if ch.carries_rows)
            records = frozenset(name for name, ch in s.channels.items() if ch.carries_records)
            loaded, router = self._compiled  # compiled at start, unless reloaded since
            self.transform = TransformWorker(
                router if loaded is s else self.router(),
                self.journal_engine,
                self.bus,
                strict_channels=strict,
                row_channels=rows,
                record_channels=records,
            )
            self.feed = TransformFeed(
                self.journal_engine,
                self.transform.submit,
                redrive_pending=not self._durable,
                shard=self.shard,
            )
            self.transform.on_saved = self.feed.saved
            self.transform.start()
            self.feed.start()
        if "ingest" in self.roles:
            self.writer = journal.JournalWriter(
                self.journal_engine,
                max_batch=s.engine.journal.max_batch,
                max_wait=s.engine.journal.max_wait_ms / 1000,
                on_accepted=self.feed.offer if self.feed else None,
            )
            self.writer.start()
            self.control = ChannelControl(self, asyncio.get_running_loop())
            holding = channel_control.held(self.journal_engine)
            for name, ch in s.channels.items():
                if name in holding:  # an operator stopped or paused it: it stays so
                    self.control.stopped_here.add(name)
                    log.info("channel_held", channel=name, state=holding[name].state)
                    continue
                source = self.build_source(self.channel_config(name, ch, s), ch)
                await source.start()
                self.sources.append(source)
        if "ingest" in self.roles and s.engine.retention.enabled:  # one pruner of two servers
            pruner = Pruner(self.journal_engine, s.engine.retention)
            self._leading_jobs.append((pruner.start, pruner.stop))
        self.leading = True
        for begin, _end in self._leading_jobs:
            begin()
        if self.requests is not None:  # now it can carry out what needs the transform stage
            self.requests.handlers = self.request_handlers()
        if self.control is not None:
            self.control.start()
        if self.leadership is not None:
            log.info("engine_leading", channels=len(self.sources))

    def when_leading(self, start: Callable[[], None], stop: Callable[[], None]) -> None:
        """Run `start` while this server leads (now, if it does) and `stop` when the engine
        stops: schedulers that must not run on two servers at once (core/connectors.py)."""
        self._leading_jobs.append((start, stop))
        if self.leading:
            start()

    @property
    def ingesting(self) -> bool:
        """Sources run here: the ingest role, on the server that leads."""
        return "ingest" in self.roles and self.leading

    def _acquired(self) -> None:
        """Leadership thread: start leading on the event loop; a failure steps down."""
        future = asyncio.run_coroutine_threadsafe(self.start_leading(), self._loop)

        def started(done: Any) -> None:
            exc = done.exception()
            if exc is not None:
                log.error("leading_not_started", error=f"{type(exc).__name__}: {exc}")
                self._lost()

        future.add_done_callback(started)

    def _lost(self) -> None:
        """Leadership lost (or never started): stop, so the process exits and restarts as standby."""
        self.exit_code = EXIT_STEPPED_DOWN
        if self.on_step_down is not None:
            self._loop.call_soon_threadsafe(self.on_step_down)

    def request_handlers(self) -> dict[str, Handler]:
        """The operator requests this process can carry out, by kind (engine/operator_requests.py)."""
        from engine.operator_actions import OperatorActions

        assert self.journal_engine is not None
        delivers_here = "deliver" in self.roles
        durable = not self.settings.engine.broker.startswith("memory://")
        acts = OperatorActions(
            self.journal_engine,
            self.bus,
            self.transform.transform if self.transform else None,
            self.store_engine,
        )
        handlers: dict[str, Handler] = acts.handlers(can_replay=durable or delivers_here)
        if self.reloader is not None:
            handlers["reload"] = self.reloader.handle_request
        if self.control is not None:
            handlers[channel_control.KIND] = self.control.handle_request
        return handlers

    def store_engine(self, destination: str) -> Engine:
        """The database a destination stores its records in."""
        d = self.settings.destinations[destination]
        return self.engine_for(d.database_url or self.settings.engine.database)

    def router(self) -> Router:
        return compile_routes(self.settings).router

    def channel_config(self, name: str, ch: Channel, settings: Settings) -> Any:
        """A channel's own configuration as `routes.yaml` (`settings`) gives it, made by the
        connector registered for its type."""
        return connectors.source_type(ch.type).configure(name, ch, settings)

    def build_source(self, config: Any, ch: Channel) -> Any:
        """A channel's source, not yet started, built by the connector registered for its type."""
        return connectors.source_type(ch.type).build(config, self)

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(tuple(self.settings.retry.tiers), self.settings.retry.max_attempts)

    def start_destination(self, name: str, d: Destination, lanes: list[int | None] | None = None) -> None:
        """Start the workers of one destination's partitions (this process's share of them)."""
        assert self.journal_engine is not None
        sink = connectors.destination_type(d.type).build(name, d, self)
        if lanes is None:
            probe = self.bus()
            probe.declare(name)
            lanes = probe.lanes(name)
            probe.close()
        for partition in lanes:
            if self.partitions is not None and (partition or 0) not in self.partitions:
                continue
            worker = DeliveryWorker(name, sink, self.journal_engine, self.bus, self.retry_policy(), partition)
            worker.start()
            self.workers.append(worker)

    def ports(self) -> dict[str, int]:
        """Listening ports by channel (sources that do not listen have none)."""
        return {s.name: s.port for s in self.sources if getattr(s, "port", None)}

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages, answer what is in flight, finish queued work, close."""
        loop = asyncio.get_running_loop()
        if self.control:
            await loop.run_in_executor(None, self.control.stop)
        await asyncio.gather(*(s.stop(grace) for s in self.sources), return_exceptions=True)
        for _begin, end in self._leading_jobs if self.leading else ():
            await loop.run_in_executor(None, end)
        if self.requests:
            await loop.run_in_executor(None, self.requests.stop)
        if self.heartbeat:
            await loop.run_in_executor(None, self.heartbeat.stop)
        if self.writer:
            await loop.run_in_executor(None, self.writer.stop)
        if self.feed:
            await loop.run_in_executor(None, self.feed.stop)
        if self.transform:
            await loop.run_in_executor(None, self.transform.stop)
        if self.leadership:  # after what runs once: leading jobs, the writer and the transform stage
            await loop.run_in_executor(None, self.leadership.stop)  # the standby may start them now
        for w in self.workers:
            await loop.run_in_executor(None, w.stop)
        for sink in {id(w.sink): w.sink for w in self.workers}.values():
            close = getattr(sink, "close", None)  # sinks holding connections (mllp_out, http_out)
            if close is not None:
                close()
        for eng in self._engines.values():
            eng.dispose()
        log.info("engine_stopped")

    def stats(self) -> dict[str, Any]:
        return {
            s.name: vars(s.counters) if hasattr(s.counters, "__dict__") else s.counters for s in self.sources
        }
