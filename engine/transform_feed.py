"""Hands journaled messages to the transform stage with a bounded amount in memory.

The journal is the buffer, not the heap. After each commit the journal writer
offers the new messages (the fast path: no read back); while more than
`high_water` messages are in the transform stage's hands the offer is declined,
and this feed reads them back from the journal as room frees up. The same reader
serves a `--role transform` process that has no writer of its own, re-drives what
a restart found unfinished, and, every `rescan` seconds, picks up messages that
no one handed over (ids committed out of order by several ingest processes, or
an offer declined just as the reader caught up). A message leaves `received`
only when its outcome is saved, so the worst case of any race is a message
transformed twice, which the idempotent destinations absorb.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import structlog
from sqlalchemy import Engine

from engine import journal

log = structlog.get_logger("engine.transform_feed")


class TransformFeed:
    def __init__(
        self,
        engine: Engine,
        submit: Callable[[list[journal.Accepted]], None],
        *,
        high_water: int = 5000,
        page: int = 1000,
        interval: float = 0.2,
        rescan: float = 5.0,
        redrive_pending: bool = False,
        shard: tuple[int, int] | None = None,
    ) -> None:
        self._engine = engine
        self._submit = submit
        self._high_water = high_water
        self._page = page
        self._interval = interval
        self._rescan = rescan
        self._redrive_pending = redrive_pending
        self._shard = shard if shard and shard[1] > 1 else None
        self._in_flight: set[int] = set()
        self._cursor = 0  # highest id handed over
        self._behind = False  # offers are being declined: read the journal until caught up
        self._declined = 0
        self._lock = threading.Lock()
        self._room = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="transform-feed", daemon=True)
        self.read_back = 0  # messages read from the journal rather than handed over

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        with self._room:
            self._room.notify_all()
        self._thread.join(timeout=10)

    @property
    def in_flight(self) -> int:
        return len(self._in_flight)

    def offer(self, items: list[journal.Accepted]) -> None:
        """Called by the journal writer after a commit."""
        with self._lock:
            if self._behind or len(self._in_flight) + len(items) > self._high_water:
                self._behind = True
                self._declined += len(items)
                self._wake.set()
                return
            # Not read back already, and this process's share when transform runs in shards.
            items = [i for i in items if i.journal_id > self._cursor and self._mine(i.journal_id)]
            if not items:
                return
            self._take(items)
        self._submit(items)

    def saved(self, journal_ids: list[int]) -> None:
        """The transform stage saved these outcomes: room for more."""
        with self._room:
            self._in_flight.difference_update(journal_ids)
            self._room.notify_all()

    def _mine(self, journal_id: int) -> bool:
        return self._shard is None or journal_id % self._shard[1] == self._shard[0]

    def _take(self, items: list[journal.Accepted]) -> None:
        self._in_flight.update(i.journal_id for i in items)
        self._cursor = max(self._cursor, items[-1].journal_id)

    # -- reading back -------------------------------------------------------------------

    def _run(self) -> None:
        if self._redrive_pending:
            self._guarded(lambda: self._sweep(include_pending=True))
        last_sweep = time.monotonic()
        while not self._stop.is_set():
            if time.monotonic() - last_sweep >= self._rescan:
                self._guarded(lambda: self._sweep(include_pending=False))
                last_sweep = time.monotonic()
            if not self._guarded(self._catch_up):
                self._wake.wait(self._interval)
                self._wake.clear()

    def _guarded(self, step: Callable[[], bool]) -> bool:
        try:
            return step()
        except Exception as exc:  # the journal is away: look again after a pause
            log.warning("transform_feed_read_failed", error=str(exc))
            self._stop.wait(1.0)
            return False

    def _catch_up(self) -> bool:
        """Hand over one page of `received` messages past the cursor; True if there may be more."""
        room = self._wait_for_room()
        if room <= 0:
            return False
        with self._lock:
            declined, after = self._declined, self._cursor
        rows = journal.unfinished(
            self._engine, include_pending=False, after=after, limit=min(room, self._page), shard=self._shard
        )
        fresh = self._hand_over(rows, past_cursor=True)
        with self._lock:
            caught_up = len(rows) < min(room, self._page) and declined == self._declined
            if caught_up:
                self._behind = False
        return bool(fresh) and not caught_up

    def _sweep(self, *, include_pending: bool) -> bool:
        """Walk the unfinished messages from the start up to the cursor and hand over those
        no one holds: at start (with pending deliveries, for the in-process bus, whose queues
        died with the old process) and from time to time for stragglers."""
        after, total = 0, 0
        while not self._stop.is_set():
            room = self._wait_for_room()
            # What was in hand before the query: such a row may be saved while the query runs
            # and must not be handed over again. Rows past the cursor belong to `_catch_up`.
            with self._lock:
                held, cursor = set(self._in_flight), self._cursor
            rows = journal.unfinished(
                self._engine,
                include_pending=include_pending,
                after=after,
                limit=self._page,
                shard=self._shard,
            )
            if not rows:
                break
            after = rows[-1].journal_id
            if not include_pending:
                rows = [r for r in rows if r.journal_id <= cursor and r.journal_id not in held]
            total += len(self._hand_over(rows, room))
            if not include_pending and after >= cursor:
                break
        if total:
            log.info("transform_feed_found", messages=total, with_pending=include_pending)
        return False

    def _hand_over(
        self, rows: list[journal.Accepted], room: int | None = None, *, past_cursor: bool = False
    ) -> list[journal.Accepted]:
        """`past_cursor`: only rows past the cursor as it is now (an offer may have handed
        over, and the transform even finished, a row while the query ran)."""
        with self._lock:
            floor = self._cursor if past_cursor else 0
            fresh = [r for r in rows if r.journal_id > floor and r.journal_id not in self._in_flight][:room]
            if fresh:
                self._take(fresh)
        if fresh:
            self.read_back += len(fresh)
            self._submit(fresh)
        return fresh

    def _wait_for_room(self) -> int:
        with self._room:
            while len(self._in_flight) >= self._high_water and not self._stop.is_set():
                self._room.wait(0.5)
            return self._high_water - len(self._in_flight)
