"""The deliver stage: consume a destination's queue and hand each record to its sink.

The queue message is acknowledged only after the outcome is safe: the sink
committed and the journal recorded the delivery; or the envelope was handed to a
delayed-retry tier (attempt count and last error travel with it); or it became a
dead letter. A crash in between means a redelivery, which the idempotent sink
absorbs. The error's class decides retry or dead letter (deadletter/policy.py).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any, Protocol

import structlog
from sqlalchemy import Engine

from deadletter import store as dead_letters
from deadletter.policy import RETRY, RetryPolicy
from engine import journal
from engine.backoff import until_it_works
from engine.bus import Bus

log = structlog.get_logger("engine.delivery")

# Envelope keys that carry retry state; a dead letter's payload is stored without them.
RETRY_KEYS = ("attempt", "last_error", "first_failed_at")


class Sink(Protocol):
    def store(self, envelopes: list[dict[str, Any]]) -> None: ...


class DeliveryWorker:
    def __init__(
        self,
        destination: str,
        sink: Sink,
        journal_engine: Engine,
        bus_factory: Callable[[], Bus],
        policy: RetryPolicy | None = None,
        partition: int | None = None,
    ) -> None:
        self.destination = destination
        self.partition = partition
        self.sink = sink
        self.journal_engine = journal_engine
        self.bus_factory = bus_factory
        self.policy = policy or RetryPolicy()
        self.stop_event = threading.Event()
        self.delivered = 0
        self.retried = 0
        self.dead = 0
        self._retry_bus: Bus | None = None
        name = f"deliver-{destination}" + (f"-p{partition}" if partition is not None else "")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 15.0) -> None:
        self.stop_event.set()
        self._thread.join(timeout)

    def handle(self, envelopes: list[dict[str, Any]]) -> None:
        """Deliver a bundle in one sink transaction; if that fails, each envelope on its own,
        so one bad record is retried or dead-lettered alone and the others go through.

        Raises only when the outcome could not be recorded (the journal itself is
        away): the bus then puts the message back and it is tried again.
        """
        if len(envelopes) == 1:
            self.handle_one(envelopes[0])
            return
        try:
            self.sink.store(envelopes)
        except Exception as exc:
            log.info(
                "bundle_failed_one_by_one",
                destination=self.destination,
                size=len(envelopes),
                error=type(exc).__name__,
            )
            for envelope in envelopes:
                self.handle_one(envelope)
            return
        self._delivered(envelopes)

    def handle_one(self, envelope: dict[str, Any]) -> None:
        """Deliver one envelope; on failure retry it later or dead-letter it."""
        try:
            self.sink.store([envelope])
        except Exception as exc:  # every failure is classified by the policy
            self._failed(envelope, exc)
            return
        self._delivered([envelope])

    def _delivered(self, envelopes: list[dict[str, Any]]) -> None:
        by_attempts: dict[int, list[tuple[int, str, str]]] = {}
        for env in envelopes:
            key = (env["journal_id"], self.destination, env["record_id"])
            by_attempts.setdefault(int(env.get("attempt") or 0) + 1, []).append(key)
        for attempts, keys in by_attempts.items():
            journal.mark_delivered(self.journal_engine, keys, attempts=attempts)
        self.delivered += len(envelopes)

    def _failed(self, envelope: dict[str, Any], exc: Exception) -> None:
        attempt = int(envelope.get("attempt") or 0) + 1
        decision, delay = self.policy.decide(exc, attempt)
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        now = journal.now_utc()
        first = envelope.get("first_failed_at") or now.isoformat()
        jid, rid = envelope["journal_id"], envelope["record_id"]
        # `attempt` counts the tries of this round (the retry budget; a replay starts a new
        # round); the log numbers every try of this delivery once, in order, across rounds.
        dead_letters.record_attempt(
            self.journal_engine,
            journal_id=jid,
            destination=self.destination,
            record_id=rid,
            attempt=dead_letters.next_attempt(self.journal_engine, jid, self.destination, rid),
            error=reason,
            outcome="retry" if decision == RETRY else "dead_letter",
        )
        if decision == RETRY and delay is not None:
            journal.mark_delivery_error(
                self.journal_engine, jid, self.destination, rid, reason, status=journal.RETRYING
            )
            retry = {**envelope, "attempt": attempt, "last_error": reason, "first_failed_at": first}
            try:
                self._publisher().publish_retry(self.destination, retry, delay)
            except Exception:  # broker away: drop this connection; the message goes back
                with contextlib.suppress(Exception):
                    self._publisher().close()
                self._retry_bus = None
                raise
            self.retried += 1
            log.warning(
                "delivery_retry",
                destination=self.destination,
                journal_id=jid,
                record_id=rid,  # masked by the log pipeline: the journal id finds the row
                attempt=attempt,
                retry_in=delay,
            )
            return
        payload = {k: v for k, v in envelope.items() if k not in RETRY_KEYS}
        dead_letters.add_dead_letter(
            self.journal_engine,
            stage=dead_letters.DELIVER,
            channel=envelope.get("channel", ""),
            route=envelope.get("route"),
            destination=self.destination,
            record_id=rid,
            journal_id=jid,
            reason=reason,
            attempts=attempt,
            first_failed_at=_time(first),
            payload=payload,
        )
        journal.mark_delivery_error(
            self.journal_engine, jid, self.destination, rid, reason, status=journal.DEAD
        )
        self.dead += 1
        control_id = envelope.get("control_id")
        log.error(  # which message and why, as a reason code; never its content
            "dead_letter",
            channel=envelope.get("channel", ""),
            control_id=control_id[:64] if isinstance(control_id, str) else "",
            message_type=envelope.get("message_type", ""),
            destination=self.destination,
            journal_id=jid,
            record_id=rid,
            attempts=attempt,
            reason=type(exc).__name__,
            error=type(exc).__name__,
        )

    def _publisher(self) -> Bus:
        """A connection of its own for retries: publishing with confirms on the consuming
        connection would drain it and run the next deliveries nested inside this one."""
        if self._retry_bus is None:
            self._retry_bus = self.bus_factory()
        return self._retry_bus

    def _run(self) -> None:
        """Consume until stopped; a lost broker connection is reopened after a pause."""
        for attempt in until_it_works(f"consume_{self.destination}", self.stop_event):
            with attempt:
                bus = self.bus_factory()
                try:
                    bus.consume(self.destination, self.handle, self.stop_event, partition=self.partition)
                finally:
                    for conn in (bus, self._retry_bus):
                        if conn is not None:
                            with contextlib.suppress(Exception):
                                conn.close()
                    self._retry_bus = None


def _time(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value)
