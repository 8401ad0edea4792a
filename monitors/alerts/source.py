"""`AlertSource`: the `alerts` channel. Every `every` seconds it collects the engine's
status, evaluates the rules against the open episodes in the `alerts` table, and for each
transition writes a log event and journals an `EngineAlert` record, the table updated in the
same transaction: a kill between the two cannot send a notice twice or lose one.

Each look judges by `clock` (the engine's, core/clock.py): the rules are pure in `now`, so
whoever builds the source may hand it another clock.

When the journal does not answer, the transitions (the journal_down alert) go to the log
only, and are remembered in memory until it answers again.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Engine

from core import journal
from core.clock import now_utc
from core.settings import Settings
from core.sources import SourceCounters, stop_thread
from monitors import engine_status
from monitors.alerts import store
from monitors.alerts.evaluate import OPEN, REPEAT, OpenAlert, Transition, evaluate
from monitors.alerts.record import entry
from monitors.alerts.rules import Sample, sample_of

log = structlog.get_logger("monitors.alerts")

EVENTS = {"open": "alert_opened", "repeat": "alert_repeated", "resolve": "alert_resolved"}


@dataclass(frozen=True, slots=True)
class AlertsConfig:
    name: str
    every: float
    settings: Settings


@dataclass
class JournalAway:
    """What `collect` gives when the journal database does not answer: only that."""

    checked_at: datetime
    journal_reachable: bool = False


@dataclass
class AlertSource:
    config: AlertsConfig
    writer: journal.Journal
    journal_engine: Engine
    clock: Callable[[], datetime] = now_utc  # the time each look judges by
    counters: SourceCounters = field(default_factory=SourceCounters)
    port: int | None = None  # it listens on nothing
    _samples: deque[Sample] = field(default_factory=deque)
    _unsaved: dict[tuple[str, str], OpenAlert] = field(default_factory=dict)
    _problem: str | None = None
    _last_look_at: str | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, store.ensure_schema, self.journal_engine)
        self._thread = threading.Thread(target=self._run, name=f"alerts-{self.name}", daemon=True)
        self._thread.start()
        log.info("alerts_started", channel=self.name, every=self.config.every)

    async def stop(self, grace: float) -> None:
        await stop_thread(self._stop, self._thread, grace)

    def reconfigure(self, config: AlertsConfig) -> None:
        """Taken at the next look (bounds, `every`)."""
        self.config = config

    def state(self) -> dict[str, Any]:
        """For the heartbeat row: what `status` shows for the channel."""
        return {
            "running": self._thread is not None and self._thread.is_alive(),
            "where": "alert rules",
            "problem": self._problem,
            "last_look_at": self._last_look_at,
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.look_once()
                self._problem = None
            except Exception as exc:  # the status or the journal: reported, never fatal
                self._problem = type(exc).__name__
                log.warning("alerts_look_failed", channel=self.name, error=type(exc).__name__)
            self._stop.wait(self.config.every)

    def look_once(self) -> list[Transition]:
        """One evaluation: collect, evaluate, record. The transitions made."""
        settings, now = self.config.settings, self.clock()
        try:
            status: Any = engine_status.collect(settings, now)
            opened = store.firing(self.journal_engine)
        except engine_status.Unreachable:
            status, opened = JournalAway(now), []
        earlier = self._earlier(now, settings.alerts.rate_window)
        if getattr(status, "journal_reachable", True) is not False:
            self._samples.append(sample_of(status, now))
        internal = frozenset(  # never "silent": records the engine makes, channels switched off
            n for n, ch in settings.channels.items() if ch.carries_records or not getattr(ch, "enabled", True)
        )
        known = opened + [
            a for k, a in self._unsaved.items() if k not in {(o.rule, o.subject) for o in opened}
        ]
        transitions = evaluate(
            status, known, now, settings.alerts, settings.engine.tzinfo, earlier=earlier, internal=internal
        )
        self._record(transitions)
        self._last_look_at = now.isoformat(timespec="seconds")
        return transitions

    def _earlier(self, now: datetime, window: float) -> Sample | None:
        """The oldest sample inside the rate window (older ones dropped)."""
        while len(self._samples) > 1 and self._samples[1].at <= now - timedelta(seconds=window):
            self._samples.popleft()
        return self._samples[0] if self._samples else None

    def _record(self, transitions: list[Transition]) -> None:
        if not transitions:
            return
        saved = [t for t in transitions if (t.rule, t.subject) not in self._unsaved]
        try:
            outcomes = self.writer.commit_with(
                [entry(self.name, t) for t in saved], lambda conn: store.apply(conn, saved)
            )
            self.counters.received += sum(
                isinstance(o, journal.Written) and not o.duplicate for o in outcomes
            )
            stored = True
        except Exception as exc:
            log.warning("alerts_not_stored", channel=self.name, error=type(exc).__name__)
            stored = False
        for t in transitions:
            key = (t.rule, t.subject)
            if not stored or key in self._unsaved:
                if t.kind in (OPEN, REPEAT):
                    self._unsaved[key] = OpenAlert(
                        None, t.rule, t.subject, t.severity, t.opened_at, t.at, t.summary, t.summary_en
                    )
                else:
                    self._unsaved.pop(key, None)
            level = log.error if t.severity == "critical" and t.kind != "resolve" else log.warning
            level(
                EVENTS[t.kind],
                channel=self.name,
                rule=t.rule,
                subject=t.subject,
                severity=t.severity,
                opened_at=t.opened_at.isoformat(timespec="seconds"),
                summary=t.summary_en,
                stored=stored and key not in self._unsaved,
            )
