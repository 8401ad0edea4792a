"""Inside a running engine: the live facts of its heartbeat row (listeners, open
connections, counters) every few seconds, a summary log line every `summary_interval`
seconds, and the HTTP app when `engine.http.listen` is set.

The facts are gathered on the event loop, where the sources count, and handed to the
runtime's heartbeat (engine/heartbeat.py), whose own thread writes the row: a slow
database never holds up an ACK.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from typing import Any

import structlog

from core.masking import masked_url
from core.sources import SUMMED
from engine import heartbeat
from monitors.http_server import HttpServer

log = structlog.get_logger("monitors.process")

SUMMARY_INTERVAL = 60.0  # seconds between two summary lines, unless `run --summary-interval`


class ProcessMonitor:
    def __init__(self, runtime: Any, summary_interval: float = SUMMARY_INTERVAL) -> None:
        self.runtime = runtime
        self.summary_interval = summary_interval
        self._task: asyncio.Task[None] | None = None
        self._last_summary: Counter[str] = Counter()
        self.http: HttpServer | None = None

    async def start(self) -> None:
        """A heartbeat with the listeners at once (so `status` sees them), then the loop and HTTP."""
        http = self.runtime.settings.engine.http
        if http is not None:
            host, port = http.host_port
            self.http = HttpServer(self.runtime.settings, host, port)
            await self.http.start()
        await self.beat_now()
        self._last_summary = self.totals()
        self._task = asyncio.create_task(self._run())
        eng = self.runtime.settings.engine
        log.info(
            "engine_backends",
            journal=masked_url(eng.database),
            bus=masked_url(eng.broker),
            listeners=[f"{x.channel}@{x.host}:{x.port}" for x in self.runtime.heartbeat.beat.listeners],
            http=f"{self.http.host}:{self.http.port}" if self.http else None,
        )

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.http:
            await self.http.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_summary = loop.time() + self.summary_interval
        while True:
            await asyncio.sleep(min(heartbeat.INTERVAL, max(0.05, next_summary - loop.time())))
            self.refresh()
            if loop.time() >= next_summary:
                self.log_summary()
                next_summary = loop.time() + self.summary_interval

    async def beat_now(self) -> None:
        """The live facts, written at once (not at the heartbeat thread's next tick)."""
        self.refresh()
        await asyncio.get_running_loop().run_in_executor(None, self.runtime.heartbeat.write_now)

    def refresh(self) -> None:
        """This process's live facts into its beat, each replaced whole (the heartbeat thread
        reads them)."""
        beat = self.runtime.heartbeat.beat
        beat.listeners = [
            heartbeat.Listener(
                s.name, s.config.host, s.port, s.counters.open_connections, getattr(s.counters, "closed", {})
            )
            for s in self.runtime.sources
            if getattr(s, "port", None)  # a file or db_poll source listens on nothing
        ]
        beat.counters = self.counters()

    def counters(self) -> dict[str, Any]:
        """Counts since this process started, per channel, stage and destination."""
        rt = self.runtime
        delivery: dict[str, Counter[str]] = {}
        for w in rt.workers:
            c = delivery.setdefault(w.destination, Counter())
            c.update(delivered=w.delivered, retried=w.retried, dead_lettered=w.dead)
        return {
            "channels": {s.name: {k: getattr(s.counters, k) for k in SUMMED} for s in rt.sources},
            "transform": dict(rt.transform.counts) if rt.transform else {},
            "delivery": {name: dict(c) for name, c in delivery.items()},
            # Sources that report their own state (a db_poll channel: polling, its last error).
            "sources": {s.name: s.state() for s in rt.sources if hasattr(s, "state")},
        }

    def totals(self) -> Counter[str]:
        c = self.counters()
        total: Counter[str] = Counter()
        for numbers in c["channels"].values():
            total.update(numbers)
        total.update(c["transform"])
        for numbers in c["delivery"].values():
            total.update(numbers)
        return total

    def log_summary(self) -> None:
        """One line: what happened since the last summary (zeros included, so a quiet
        interval is visible as such)."""
        now = self.totals()
        keys = (*SUMMED, "routed", "unrouted", "failed", "withheld", "delivered", "retried", "dead_lettered")
        since = {k: now[k] - self._last_summary[k] for k in keys}
        self._last_summary = now
        log.info("summary", interval_s=self.summary_interval, **since)
