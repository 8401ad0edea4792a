"""The message journal: every received message, committed before it is acknowledged.

The journal is the engine's memory. A message is ACKed (AA/CA) only after its raw
bytes are committed here; from then on the journal row says where it is
(`received` → `routed` | `unrouted` | `failed`, and per destination in
`journal_deliveries`). Rejected input is kept too, with the reason.

Writes from many connections share commits (group commit): a writer thread takes
whatever is waiting, up to `max_batch`, and commits it in one transaction, so a
disk flush is paid per batch, not per message. The same channel + sender + control
id seen again with the same bytes is answered with the original ACK and counted, not
processed twice; with other bytes it is a new message, flagged `control_id_reused`.
A value the database refuses costs only its own message (see `Refused`).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial

import structlog
from sqlalchemy import Connection, Engine

from core.journal import RECEIVED, Accepted, Entry, Outcome, Refused, Sink, Written
from engine.batching import run_batches
from engine.journal.commit import commit_in
from engine.journal.fast_paths import store_for

log = structlog.get_logger("engine.journal")


_Item = tuple[Entry, asyncio.AbstractEventLoop | None, Sink]


class JournalWriter:
    """Group-commits entries from any thread, without waiting for more than is queued.

    A lone message is committed at once; while a commit is in flight the next ones queue
    up and share the following commit, so batches grow with the load by themselves.
    `max_wait` (seconds) optionally lingers for more after the first of a batch.

    `submit` returns a Future. `submit_to` hands the outcome to a callback on an event
    loop instead: a commit then wakes each loop once for all of its entries, which is
    what keeps a busy MLLP listener from paying a loop wake-up per message.
    """

    def __init__(
        self,
        engine: Engine,
        *,
        max_batch: int = 500,
        max_wait: float = 0.0,
        on_accepted: Callable[[list[Accepted]], None] | None = None,
    ) -> None:
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._on_accepted = on_accepted
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="journal-writer", daemon=True)
        self._store = store_for(engine)
        self._engine = engine
        self.commits = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def submit(self, entry: Entry) -> Future[Written | Refused]:
        fut: Future[Written | Refused] = Future()
        self._queue.put((entry, None, partial(_settle, fut)))
        return fut

    def submit_to(self, entry: Entry, loop: asyncio.AbstractEventLoop, sink: Sink) -> None:
        """Journal `entry`; call `sink(outcome)` on `loop` once its commit is over."""
        self._queue.put((entry, loop, sink))

    def commit_with(self, entries: list[Entry], also: Callable[[Connection], None]) -> list[Outcome]:
        """Journal `entries` and run `also(conn)` in the same transaction (a poll cursor that
        moves only with the rows it read), through SQLAlchemy Core on every backend. Runs in
        the caller's thread, outside the group commit; a failure raises and keeps nothing."""
        with self._engine.begin() as conn:
            outcomes, accepted = commit_in(conn, entries)
            also(conn)
        if accepted and self._on_accepted:
            self._on_accepted(accepted)
        return outcomes

    def _run(self) -> None:
        try:
            run_batches(self._queue, self._write, self._max_batch, self._max_wait)
        finally:
            self._store.close()

    def _write(self, batch: list[_Item]) -> None:
        entries = [item[0] for item in batch]
        outcomes: Sequence[Outcome]
        accepted: list[Accepted]
        try:
            outcomes, accepted = self._store.commit(entries)
        except self._store.per_entry as exc:
            # Another ingest process took a control id between our look-up and insert, or
            # one value does not fit: write one by one so only that entry is affected.
            log.warning("journal_batch_retried_one_by_one", error=str(exc), batch=len(batch))
            outcomes, accepted = self._one_by_one(entries)
            self.commits += 1
        except Exception as exc:
            log.error("journal_write_failed", error=str(exc), batch=len(batch))
            outcomes, accepted = [exc] * len(batch), []
        else:
            self.commits += 1
        _hand_out(batch, outcomes)
        if accepted and self._on_accepted:
            self._on_accepted(accepted)

    def _one_by_one(self, entries: list[Entry]) -> tuple[list[Outcome], list[Accepted]]:
        outcomes: list[Outcome] = []
        accepted: list[Accepted] = []
        for entry in entries:
            try:
                r, a = self._store.commit([entry])
            except self._store.per_entry as exc:
                r, a = [self._refuse(entry, exc)], []
            except Exception as exc:
                r, a = [exc], []
            outcomes += r
            accepted += a
        return outcomes, accepted

    def _refuse(self, entry: Entry, exc: Exception) -> Outcome:
        """Keep a message whose values the database refused as `rejected`, without them.

        A database that is down fails with other errors, which stay AE (send again);
        this message would fail the same way each time it is sent, so it is refused.
        """
        reason = f"the journal cannot store this message's header values ({type(exc).__name__})"
        log.warning("journal_refused_message", channel=entry.channel, error=type(exc).__name__)
        try:
            (kept,), _ = self._store.commit([entry.storable(reason)])
        except Exception as again:
            return again
        if isinstance(kept, Written) and entry.status == RECEIVED:
            return Refused(kept.journal_id, reason)
        return kept


def _settle(fut: Future[Written | Refused], outcome: Outcome) -> None:
    if isinstance(outcome, Exception):
        fut.set_exception(outcome)
    else:
        fut.set_result(outcome)


def _hand_out(batch: list[_Item], outcomes: Sequence[Outcome]) -> None:
    """Outcomes to their submitters: one thread-safe call per event loop, not per entry."""
    per_loop: dict[asyncio.AbstractEventLoop, list[tuple[Sink, Outcome]]] = {}
    for (_, loop, sink), outcome in zip(batch, outcomes, strict=True):
        if loop is None:
            _call_sinks([(sink, outcome)])
        elif loop in per_loop:
            per_loop[loop].append((sink, outcome))
        else:
            per_loop[loop] = [(sink, outcome)]
    for loop, calls in per_loop.items():
        try:
            loop.call_soon_threadsafe(_call_sinks, calls)
        except RuntimeError:
            log.warning("journal_outcome_undelivered", reason="event loop closed", messages=len(calls))


def _call_sinks(calls: list[tuple[Sink, Outcome]]) -> None:
    for sink, outcome in calls:
        try:
            sink(outcome)
        except Exception:
            log.exception("journal_outcome_callback_failed")
