"""Feeds the transform stage from the journal when ingest runs in another process.

In one process the journal writer hands each commit's messages straight to the
transform worker. A `--role transform` process has no writer, so it reads the
journal instead: every poll takes the oldest `received` messages it has not
handed over yet. A message leaves `received` once its outcome is saved, so
nothing is skipped when ids commit out of order (several ingest processes), and
what was in flight when a process died is simply found again by the next one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from sqlalchemy import Engine

from engine import journal

log = structlog.get_logger("engine.journal_tail")


class JournalTail:
    def __init__(
        self,
        engine: Engine,
        submit: Callable[[list[journal.Accepted]], None],
        *,
        interval: float = 0.1,
        limit: int = 1000,
    ) -> None:
        self._engine = engine
        self._submit = submit
        self._interval = interval
        self._limit = limit
        self._in_flight: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="journal-tail", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def saved(self, journal_ids: list[int]) -> None:
        """The transform stage saved these messages' outcomes: they may be looked at again."""
        with self._lock:
            self._in_flight.difference_update(journal_ids)

    def poll(self) -> int:
        """Hand over what is waiting; returns how many messages were new."""
        rows = journal.unfinished(self._engine, include_pending=False, limit=self._limit)
        with self._lock:
            fresh = [r for r in rows if r.journal_id not in self._in_flight]
            self._in_flight.update(r.journal_id for r in fresh)
        if fresh:
            self._submit(fresh)
        return len(fresh)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.poll() >= self._limit // 2
            except Exception as exc:  # the journal is away: look again after a pause
                log.warning("journal_tail_failed", error=str(exc))
                busy = False
            if not busy:
                self._stop.wait(self._interval)
