"""Delayed retries and dead letters of the deliver stage, on the in-process bus and on RabbitMQ.

The destination here is a small sink of our own that fails on cue (the seam every
destination plugs into); the real record store under a real database outage is
exercised by tests/faults/.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kombu import Connection

from core.database import make_engine
from core.errors import PermanentDeliveryError, TransientDeliveryError
from deadletter import audit
from deadletter import store as dead_letters
from deadletter.policy import RetryPolicy
from engine import journal
from engine.bus import Bus, decode
from engine.delivery import DeliveryWorker
from support import AMQP_URL, require_service, scalar, wait_until


class FlakySink:
    """Fails the first `failures` stores of each record with `error`, then keeps them."""

    def __init__(
        self, failures: int, error: type[Exception] = TransientDeliveryError, only: str | None = None
    ):
        self.failures = failures
        self.error = error
        self.only = only
        self.seen: dict[str, int] = {}
        self.stored: list[str] = []
        self.lock = threading.Lock()

    def store(self, envelopes: list[dict[str, Any]]) -> None:
        for env in envelopes:
            rid = env["record_id"]
            with self.lock:
                self.seen[rid] = self.seen.get(rid, 0) + 1
                if (self.only is None or rid == self.only) and self.seen[rid] <= self.failures:
                    raise self.error(f"store refused {rid} (try {self.seen[rid]})")
                self.stored.append(rid)


def envelope(n: int, person: str = "0010000001") -> dict[str, Any]:
    return {
        "journal_id": n,
        "channel": "hospital",
        "control_id": f"C{n}",
        "route": "lab-results",
        "record_type": "LabResult",
        "record_id": f"lab:{n}",
        "event_time": "2024-03-21T11:00:00+08:00",
        "record": {"person": {"his_id": person, "his_system": "HIS"}},
    }


@pytest.fixture(params=["memory", "rabbitmq"])
def bus_url(request: pytest.FixtureRequest) -> str:
    if request.param == "rabbitmq":
        require_service("127.0.0.1", 5672, "RabbitMQ")
        return AMQP_URL
    return "memory://"


@pytest.fixture
def journal_engine(tmp_path: Path) -> Iterator[Any]:
    engine = make_engine(f"sqlite:///{tmp_path}/journal.db")
    journal.ensure_schema(engine)
    dead_letters.ensure_schema(engine)
    audit.ensure_schema(engine)
    yield engine
    engine.dispose()


def run_worker(
    bus_url: str, prefix: str, sink: FlakySink, journal_engine: Any, policy: RetryPolicy, partitions: int = 1
) -> tuple[list[DeliveryWorker], Any]:
    parts = {"store": partitions}
    workers = [
        DeliveryWorker("store", sink, journal_engine, lambda: Bus(bus_url, prefix, parts), policy, p)
        for p in ([None] if partitions == 1 else range(partitions))
    ]
    for w in workers:
        w.start()
    return workers, lambda: Bus(bus_url, prefix, parts)


def publish(bus: Any, *envelopes: dict[str, Any]) -> None:
    b = bus()
    try:
        for env in envelopes:
            b.publish("store", env)
    finally:
        b.close()


def cleanup(bus_url: str, prefix: str) -> None:
    if bus_url.startswith("amqp"):
        with Connection(bus_url) as conn:
            channel = conn.default_channel
            for name in [
                f"{prefix}.store",
                *(f"{prefix}.store.p{i}" for i in range(4)),
                f"{prefix}.store.retry.1s",
                *(f"{prefix}.store.p{i}.retry.1s" for i in range(4)),
            ]:
                try:
                    channel.queue_delete(name)
                except Exception:
                    channel = conn.channel()


class TestDeliverRetries:
    def test_transient_failures_wait_in_a_tier_then_deliver(self, bus_url: str, journal_engine: Any) -> None:
        """Two transient failures, then success: delivered, attempts counted, each attempt kept."""
        prefix = f"t{uuid.uuid4().hex[:8]}"
        sink = FlakySink(failures=2)
        workers, bus = run_worker(bus_url, prefix, sink, journal_engine, RetryPolicy((0.2,), max_attempts=5))
        try:
            publish(bus, envelope(1))
            wait_until(lambda: sink.stored == ["lab:1"], timeout=20)
            wait_until(lambda: scalar(journal_engine, "select status from journal_deliveries") == "delivered")
            assert scalar(journal_engine, "select attempts from journal_deliveries") == 3
            assert (
                scalar(journal_engine, "select count(*) from delivery_attempts where outcome = 'retry'") == 2
            )
            assert scalar(journal_engine, "select count(*) from dead_letters") == 0
        finally:
            for w in workers:
                w.stop()
            cleanup(bus_url, prefix)

    def test_past_max_attempts_it_becomes_a_dead_letter_and_others_flow(
        self, bus_url: str, journal_engine: Any
    ) -> None:
        """A record that always fails ends in dead letters after max_attempts; the next one is delivered."""
        prefix = f"t{uuid.uuid4().hex[:8]}"
        sink = FlakySink(failures=99, only="lab:1")
        workers, bus = run_worker(bus_url, prefix, sink, journal_engine, RetryPolicy((0.2,), max_attempts=3))
        try:
            publish(bus, envelope(1), envelope(2))
            wait_until(lambda: "lab:2" in sink.stored, timeout=20)
            wait_until(lambda: scalar(journal_engine, "select count(*) from dead_letters") == 1, timeout=30)
            row = dead_letters.list_dead_letters(journal_engine)[0]
            assert (row["stage"], row["destination"], row["record_id"], row["attempts"]) == (
                "deliver",
                "store",
                "lab:1",
                3,
            )
            assert row["reason"].startswith("TransientDeliveryError: store refused lab:1")
            wait_until(
                lambda: (
                    scalar(journal_engine, "select status from journal_deliveries where record_id = 'lab:1'")
                    == "dead"
                )
            )
            shown = dead_letters.get_dead_letter(journal_engine, row["id"])
            assert (
                shown is not None
                and shown["payload"]["record_id"] == "lab:1"
                and "attempt" not in shown["payload"]
            )
        finally:
            for w in workers:
                w.stop()
            cleanup(bus_url, prefix)

    def test_permanent_failure_is_dead_at_once(self, bus_url: str, journal_engine: Any) -> None:
        """A permanent error (the destination will never take it) is not retried."""
        prefix = f"t{uuid.uuid4().hex[:8]}"
        sink = FlakySink(failures=99, error=PermanentDeliveryError)
        workers, bus = run_worker(bus_url, prefix, sink, journal_engine, RetryPolicy((0.2,), max_attempts=5))
        try:
            publish(bus, envelope(1))
            wait_until(lambda: scalar(journal_engine, "select count(*) from dead_letters") == 1)
            assert scalar(journal_engine, "select attempts from dead_letters") == 1
            assert sink.seen == {"lab:1": 1}
        finally:
            for w in workers:
                w.stop()
            cleanup(bus_url, prefix)


class TestPartitions:
    def test_one_persons_records_keep_their_order_across_partitions(
        self, bus_url: str, journal_engine: Any
    ) -> None:
        """With 4 partitions, each person's records arrive in the order they were published."""
        prefix = f"t{uuid.uuid4().hex[:8]}"
        sink = FlakySink(failures=0)
        workers, bus = run_worker(bus_url, prefix, sink, journal_engine, RetryPolicy(), partitions=4)
        try:
            sent = [envelope(n, person=f"P{n % 7}") for n in range(1, 141)]
            publish(bus, *sent)
            wait_until(lambda: len(sink.stored) == 140, timeout=30)
            for p in range(7):
                mine = [e["record_id"] for e in sent if e["record"]["person"]["his_id"] == f"P{p}"]
                assert [r for r in sink.stored if r in set(mine)] == mine
            probe = bus()
            lanes = {probe.partition_of("store", e) for e in sent}
            probe.close()
            assert len(lanes) > 1  # the persons really were spread over partitions
        finally:
            for w in workers:
                w.stop()
            cleanup(bus_url, prefix)


class TestBundles:
    def test_a_batch_travels_as_one_queue_message_per_partition(self) -> None:
        """30 envelopes for 3 persons over 4 partitions: one queue message per partition used,
        each holding that partition's envelopes in publishing order (read back from RabbitMQ)."""
        require_service("127.0.0.1", 5672, "RabbitMQ")
        bus_url = AMQP_URL
        prefix = f"t{uuid.uuid4().hex[:8]}"
        parts = {"store": 4}
        bus = Bus(bus_url, prefix, parts)
        try:
            sent = [envelope(n, person=f"P{n % 3}") for n in range(30)]
            assert bus.publish_many([("store", e) for e in sent]) == len(
                {bus.partition_of("store", e) for e in sent}
            )
            got: dict[int, list[list[int]]] = {}
            with Connection(bus_url) as conn:
                for p in range(4):
                    queue = bus.queue_for("store", p)(conn.default_channel)
                    while (message := queue.get(no_ack=True)) is not None:
                        got.setdefault(p, []).append([e["journal_id"] for e in decode(message.body)])
            for p, bundles in got.items():
                assert len(bundles) == 1
                assert bundles[0] == [e["journal_id"] for e in sent if bus.partition_of("store", e) == p]
        finally:
            bus.close()
            cleanup(bus_url, prefix)

    def test_one_bad_record_in_a_bundle_does_not_hold_up_the_others(
        self, bus_url: str, journal_engine: Any
    ) -> None:
        """A bundle of 5 where one record fails (in the bundle, then on its own once): the four
        others are delivered at their first attempt, the bad one at its second own attempt."""
        prefix = f"t{uuid.uuid4().hex[:8]}"
        sink = FlakySink(failures=2, only="lab:3")
        workers, bus = run_worker(bus_url, prefix, sink, journal_engine, RetryPolicy((0.2,), max_attempts=5))
        try:
            b = bus()
            b.publish_many([("store", envelope(n)) for n in range(1, 6)])
            b.close()
            wait_until(lambda: "lab:3" in sink.stored, timeout=20)
            wait_until(
                lambda: (
                    scalar(
                        journal_engine, "select count(*) from journal_deliveries where status = 'delivered'"
                    )
                    == 5
                )
            )
            attempts = dict(
                (rid, n)
                for rid, n in journal_engine.connect().exec_driver_sql(
                    "select record_id, attempts from journal_deliveries"
                )
            )
            assert attempts == {"lab:1": 1, "lab:2": 1, "lab:3": 2, "lab:4": 1, "lab:5": 1}
            assert set(sink.stored) == {f"lab:{n}" for n in range(1, 6)}
            assert scalar(journal_engine, "select count(*) from dead_letters") == 0
        finally:
            for w in workers:
                w.stop()
            cleanup(bus_url, prefix)
