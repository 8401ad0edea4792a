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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog
from sqlalchemy import Engine

from channels import record_store
from channels.mllp_source import MllpConfig, MllpSource
from deadletter import audit
from deadletter import store as dead_letters
from deadletter.policy import RetryPolicy
from engine import journal
from engine.bus import Bus
from engine.database import make_engine
from engine.delivery import DeliveryWorker
from engine.errors import StartupError
from engine.ingest import Policy
from engine.operator_requests import Handler, RequestPoller
from engine.pipeline import TransformWorker
from engine.router import Route, Router
from engine.settings import Settings
from engine.transform_feed import TransformFeed
from transforms.mapping import Mapping, load_mapping

log = structlog.get_logger("engine.runtime")

ALL_ROLES = frozenset({"ingest", "transform", "deliver"})


@dataclass
class EngineRuntime:
    settings: Settings
    roles: frozenset[str] = ALL_ROLES
    partitions: frozenset[int] | None = None  # deliver only these partitions (None: all)
    shard: tuple[int, int] | None = None  # transform only journal ids ≡ i (mod n)
    sources: list[MllpSource] = field(default_factory=list)
    journal_engine: Engine | None = None
    writer: journal.JournalWriter | None = None
    transform: TransformWorker | None = None
    workers: list[DeliveryWorker] = field(default_factory=list)
    feed: TransformFeed | None = None
    requests: RequestPoller | None = None
    _engines: dict[str, Engine] = field(default_factory=dict)

    def engine_for(self, url: str) -> Engine:
        if url not in self._engines:
            self._engines[url] = make_engine(url)
        return self._engines[url]

    def bus(self) -> Bus:
        eng = self.settings.engine
        partitions = {name: getattr(d, "partitions", 1) for name, d in self.settings.destinations.items()}
        return Bus(eng.broker, eng.queue_prefix, partitions)

    async def start(self) -> None:
        s = self.settings
        if s.engine.broker.startswith("memory://") and self.roles not in (ALL_ROLES, {"ingest"}):
            raise StartupError(
                "the embedded memory:// bus needs all roles in one process (or ingest alone: "
                "messages wait in the journal until the next full start)"
            )
        self.journal_engine = self.engine_for(s.engine.database)
        journal.ensure_schema(self.journal_engine)
        dead_letters.ensure_schema(self.journal_engine)
        audit.ensure_schema(self.journal_engine)
        destinations = {name: d for name, d in s.destinations.items()}
        for d in destinations.values():
            record_store.ensure_schema(self.engine_for(d.database or s.engine.database))
        probe = self.bus()
        for name in destinations:
            probe.declare(name)
        durable = probe.capabilities.durable
        probe_lanes = {name: probe.lanes(name) for name in destinations}
        probe.close()

        if "transform" in self.roles:
            # One transform process of several does it, so none counts a message twice.
            recovered = 0
            if self.shard is None or self.shard[0] == 0:
                recovered = dead_letters.recover_transform_failures(self.journal_engine)
            if recovered:
                log.warning("failed_messages_dead_lettered", count=recovered)
            strict = frozenset(name for name, ch in s.channels.items() if ch.strict)
            self.transform = TransformWorker(
                self.router(), self.journal_engine, self.bus, strict_channels=strict
            )
            self.feed = TransformFeed(
                self.journal_engine, self.transform.submit, redrive_pending=not durable, shard=self.shard
            )
            self.transform.on_saved = self.feed.saved
            self.transform.start()
            self.feed.start()
        if "deliver" in self.roles:
            for name, d in destinations.items():
                sink = record_store.RecordStore(self.engine_for(d.database or s.engine.database))
                policy = RetryPolicy(tuple(s.retry.tiers), s.retry.max_attempts)
                for partition in probe_lanes[name]:
                    if self.partitions is not None and (partition or 0) not in self.partitions:
                        continue
                    worker = DeliveryWorker(name, sink, self.journal_engine, self.bus, policy, partition)
                    worker.start()
                    self.workers.append(worker)
        if "ingest" in self.roles:
            self.writer = journal.JournalWriter(
                self.journal_engine,
                max_batch=s.engine.journal.max_batch,
                max_wait=s.engine.journal.max_wait_ms / 1000,
                on_accepted=self.feed.offer if self.feed else None,
            )
            self.writer.start()
            tz = ZoneInfo(s.engine.timezone)
            for name, ch in s.channels.items():
                host, port = ch.host_port
                policy = Policy(name, ch.encoding, ch.ack.mode, tz, ch.limits.limits())
                cfg = MllpConfig(name, host, port, policy, ch.max_message_bytes, ch.idle_timeout)
                source = MllpSource(cfg, self.writer)
                await source.start()
                self.sources.append(source)
        self.requests = RequestPoller(self.journal_engine, self.request_handlers())
        self.requests.start()
        log.info("engine_started", roles=sorted(self.roles), channels=len(self.sources))

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
        return handlers

    def store_engine(self, destination: str) -> Engine:
        """The database a destination stores its records in."""
        d = self.settings.destinations[destination]
        return self.engine_for(d.database or self.settings.engine.database)

    def router(self) -> Router:
        compiled: dict[Path, Mapping] = {}
        routes = []
        for r in self.settings.routes:
            path = r.mapping_path(self.settings)
            if path not in compiled:
                compiled[path] = load_mapping(path, display=r.mapping, roots=self.settings.roots)
            routes.append(Route.build(r, compiled[path]))
        return Router(routes)

    def ports(self) -> dict[str, int]:
        return {s.name: s.port for s in self.sources}

    async def stop(self, grace: float = 10.0) -> None:
        """Stop taking messages, answer what is in flight, finish queued work, close."""
        await asyncio.gather(*(s.stop(grace) for s in self.sources), return_exceptions=True)
        loop = asyncio.get_running_loop()
        if self.requests:
            await loop.run_in_executor(None, self.requests.stop)
        if self.writer:
            await loop.run_in_executor(None, self.writer.stop)
        if self.feed:
            await loop.run_in_executor(None, self.feed.stop)
        if self.transform:
            await loop.run_in_executor(None, self.transform.stop)
        for w in self.workers:
            await loop.run_in_executor(None, w.stop)
        for eng in self._engines.values():
            eng.dispose()
        log.info("engine_stopped")

    def stats(self) -> dict[str, Any]:
        return {
            s.name: vars(s.counters) if hasattr(s.counters, "__dict__") else s.counters for s in self.sources
        }
