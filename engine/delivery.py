"""The deliver stage: consume a destination's queue and hand each record to its sink.

The queue message is acknowledged only after the sink committed and the journal
recorded the delivery, so a crash in between means a redelivery, which the
idempotent sink absorbs. A transient failure puts the message back (retry tiers
and dead letters build on this); a permanent one is recorded as `failed` with its
reason and not retried.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine

from engine import journal
from engine.backoff import until_it_works
from engine.bus import Bus
from engine.errors import PermanentDeliveryError

log = structlog.get_logger("engine.delivery")


class Sink(Protocol):
    def store(self, envelopes: list[dict[str, Any]]) -> None: ...


class DeliveryWorker:
    def __init__(
        self,
        destination: str,
        sink: Sink,
        journal_engine: Engine,
        bus_factory: Callable[[], Bus],
    ) -> None:
        self.destination = destination
        self.sink = sink
        self.journal_engine = journal_engine
        self.bus_factory = bus_factory
        self.stop_event = threading.Event()
        self.delivered = 0
        self._thread = threading.Thread(target=self._run, name=f"deliver-{destination}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout)

    def handle(self, envelope: dict[str, Any]) -> None:
        key = (envelope["journal_id"], self.destination, envelope["record_id"])
        try:
            self.sink.store([envelope])
        except PermanentDeliveryError as exc:
            log.error("delivery_refused", destination=self.destination, record_id=key[2], error=str(exc))
            journal.mark_delivery_error(self.journal_engine, *key, str(exc), status=journal.FAILED)
            return
        except Exception as exc:
            journal_note(self.journal_engine, key, exc)
            raise
        journal.mark_delivered(self.journal_engine, [key])
        self.delivered += 1

    def _run(self) -> None:
        """Consume until stopped; a lost broker connection is reopened after a pause."""
        for attempt in until_it_works(f"consume_{self.destination}", self.stop_event):
            with attempt:
                bus = self.bus_factory()
                try:
                    bus.consume(self.destination, self.handle, self.stop_event)
                finally:
                    with contextlib.suppress(Exception):
                        bus.close()


def journal_note(engine: Engine, key: tuple[int, str, str], exc: Exception) -> None:
    """Best effort: the journal may be the thing that is down."""
    try:
        journal.mark_delivery_error(engine, *key, str(exc))
    except Exception:
        log.warning("journal_note_failed", destination=key[1], error=str(exc))
