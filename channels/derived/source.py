"""`DerivedSource`: relays a record store's `derived_outbox` into the journal.

One thread per channel. Every `every` seconds it reads the outbox in id order, a batch at a
time, journals each row as one message (`Journal.commit_with`), then deletes the rows it
journaled. The journal and the store may be different databases, so the two commits are
apart: a kill between them leaves the rows in the outbox, and the next look journals them
again with the same bytes and control id, which the journal counts as duplicates, not new
messages. A failure (the store, the journal) deletes nothing: the channel records the error
where `status` reads it, waits longer each time, and tries again.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog
from sqlalchemy import Engine, delete, select

from channels.derived.relay import entry
from channels.record_store.schema import derived_outbox, ensure_schema
from core import failpoints, journal
from core.masking import mask_text, masked_url
from core.sources import SourceCounters, stop_thread

log = structlog.get_logger("channels.derived")

MAX_BACKOFF = 60.0  # seconds between attempts after many failures in a row


@dataclass(frozen=True, slots=True)
class DerivedConfig:
    """A channel's settings as the source uses them (built by channels/derived/connector.py)."""

    name: str
    store: str
    database: str
    every: float
    batch: int


@dataclass
class RelayHealth:
    """What `status` shows for the channel: relaying or not, and the last error."""

    running: bool = False
    last_look_at: str | None = None
    problem: str | None = None
    problem_at: str | None = None
    failures_in_a_row: int = 0
    where: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dict(vars(self))


@dataclass
class DerivedSource:
    config: DerivedConfig
    writer: journal.Journal
    store_engine: Engine
    counters: SourceCounters = field(default_factory=SourceCounters)
    health: RelayHealth = field(default_factory=RelayHealth)
    port: int | None = None  # it listens on nothing
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:
        self.health.where = f"{self.config.store} ({masked_url(self.config.database)})"
        await asyncio.get_running_loop().run_in_executor(None, ensure_schema, self.store_engine)
        self._thread = threading.Thread(target=self._run, name=f"derived-{self.name}", daemon=True)
        self._thread.start()
        log.info("derived_relay_started", channel=self.name, store=self.config.store, every=self.config.every)

    async def stop(self, grace: float) -> None:
        await stop_thread(self._stop, self._thread, grace)

    def reconfigure(self, config: DerivedConfig) -> None:
        """Taken at the next look (`every`, `batch`; another store takes a restart)."""
        self.config = config

    def state(self) -> dict[str, Any]:
        """For the heartbeat row: what `status` and the monitors show."""
        return self.health.as_dict()

    def _run(self) -> None:
        while not self._stop.is_set():
            config = self.config
            try:
                self.relay_once(config)
            except Exception as exc:  # the store or the journal: reported, never fatal
                wait = self._failed(config, exc)
            else:
                wait = config.every
                self.health.running, self.health.problem = True, None
                self.health.failures_in_a_row = 0
            self._stop.wait(wait)

    def _failed(self, config: DerivedConfig, exc: Exception) -> float:
        h = self.health
        h.failures_in_a_row += 1
        first_line = mask_text(str(exc).splitlines()[0] if str(exc) else "")  # never the statement's values
        h.running, h.problem, h.problem_at = False, f"{type(exc).__name__}: {first_line}"[:300], _now()
        wait = min(config.every * 2 ** (h.failures_in_a_row - 1), max(config.every, MAX_BACKOFF))
        log.warning(
            "derived_relay_failed",
            channel=config.name,
            error=type(exc).__name__,
            failures_in_a_row=h.failures_in_a_row,
            retry_in_s=round(wait, 3),
        )
        return wait

    def relay_once(self, config: DerivedConfig) -> int:
        """Journal the outbox, a batch at a time, deleting what was journaled. Rows journaled."""
        relayed = 0
        while not self._stop.is_set():
            with self.store_engine.connect() as conn:
                rows = conn.execute(
                    select(derived_outbox).order_by(derived_outbox.c.id).limit(config.batch)
                ).all()
            if not rows:
                break
            relayed += self._journal(config, rows)
            if len(rows) < config.batch:
                break
        self.health.last_look_at = _now()
        return relayed

    def _journal(self, config: DerivedConfig, rows: Sequence[Any]) -> int:
        entries = [entry(config.name, config.store, row) for row in rows]
        outcomes = self.writer.commit_with(entries, lambda conn: None)
        failpoints.reach(failpoints.DERIVED_JOURNALED)  # fault tests: journaled, still in the outbox
        written = duplicates = 0
        for outcome in outcomes:
            if isinstance(outcome, journal.Written):
                written += not outcome.duplicate
                duplicates += outcome.duplicate
            elif isinstance(outcome, journal.Refused):
                self.counters.rejected += 1  # kept as `rejected` in the journal, with its reason
        with self.store_engine.begin() as conn:
            conn.execute(delete(derived_outbox).where(derived_outbox.c.id.in_([row.id for row in rows])))
        self.counters.received += written
        self.counters.accepted += written
        self.counters.duplicates += duplicates
        log.debug("derived_relayed", channel=config.name, journaled=written, duplicates=duplicates)
        return written


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
