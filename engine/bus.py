"""The message bus between the transform stage and the destinations, on kombu.

Delayed retries: on RabbitMQ a failed envelope waits in a queue per destination and
delay (`<prefix>.<destination>.retry.<N>s`, message TTL N seconds) whose dead-letter
exchange sends it back to the work queue when the time is up — nothing sleeps in a
consumer. In-process (`memory://`) a timer thread does the same; what it holds is
also `pending` in the journal, so a restart re-drives it.

One class serves both the embedded default (`memory://`, kombu's in-process
transport, made durable by the journal: unfinished deliveries are re-driven at
start) and RabbitMQ (`amqp://`, durable queues, persistent messages, publisher
confirms). Each destination has one durable queue `<prefix>.<destination>` bound to
the direct exchange `<prefix>.records` with the destination name as routing key.

A queue message carries a JSON list of envelopes (a bundle): the transform stage
publishes what one batch sends to one partition as one message, and the deliver
stage stores a bundle in one transaction. Per-message broker and commit costs are
paid per bundle, not per record; a retry always travels alone.

kombu connections are not thread-safe: every thread that publishes or consumes
opens its own `Bus`.
"""

from __future__ import annotations

import heapq
import socket
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from kombu import Connection, Exchange, Producer, Queue
from kombu.message import Message as KombuMessage
from pydantic_core import from_json, to_json

log = structlog.get_logger("engine.bus")

MAX_BUNDLE = 100  # envelopes per queue message: one store transaction on the other side
_RETRY_POLICY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5}


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What the transport behind a URL can promise, so callers never guess."""

    durable: bool  # survives an engine crash by itself
    confirms: bool  # publish returns only after the broker took the message


def capabilities_for(url: str) -> Capabilities:
    if url.startswith("memory://"):
        return Capabilities(durable=False, confirms=False)
    return Capabilities(durable=True, confirms=True)


class Bus:
    """Publish envelopes to destination queues and consume them, acking after the work.

    A destination may be split into partitions (`<prefix>.<destination>.p<N>`); an
    envelope goes to the partition its person's key hashes to, so one person's
    records are applied in order. On RabbitMQ every queue is single-active-consumer:
    a second engine's worker waits and takes over when the first dies.
    """

    def __init__(self, url: str, prefix: str = "mch", partitions: Mapping[str, int] | None = None) -> None:
        self.url = url
        self.prefix = prefix
        self.partitions = dict(partitions or {})
        self.capabilities = capabilities_for(url)
        options: dict[str, Any] = {}
        if self.capabilities.confirms:
            options["confirm_publish"] = True
        else:
            options["polling_interval"] = 0.005
        self._conn = Connection(url, transport_options=options, heartbeat=0)
        self._exchange = Exchange(f"{prefix}.records", type="direct", durable=True)
        self._declared: set[str] = set()
        self._producer: Producer | None = None
        self.connection_errors: tuple[type[BaseException], ...] = (
            *self._conn.connection_errors,
            *self._conn.channel_errors,
            OSError,
            socket.timeout,
        )

    def lane(self, destination: str, partition: int | None) -> str:
        """Routing key (and queue name without prefix) of a destination's partition."""
        return destination if partition is None else f"{destination}.p{partition}"

    def lanes(self, destination: str) -> list[int | None]:
        n = self.partitions.get(destination, 1)
        return [None] if n <= 1 else list(range(n))

    def partition_of(self, destination: str, envelope: dict[str, Any]) -> int | None:
        n = self.partitions.get(destination, 1)
        if n <= 1:
            return None
        return zlib.crc32(partition_key(envelope).encode("utf-8")) % n

    def queue_for(self, destination: str, partition: int | None = None) -> Queue:
        lane = self.lane(destination, partition)
        arguments = {"x-single-active-consumer": True} if self.capabilities.durable else None
        return Queue(
            f"{self.prefix}.{lane}", self._exchange, routing_key=lane, durable=True, queue_arguments=arguments
        )

    def declare(self, destination: str) -> None:
        if destination not in self._declared:
            for partition in self.lanes(destination):
                self.queue_for(destination, partition)(self._conn.default_channel).declare()
            self._declared.add(destination)

    def publish(self, destination: str, envelope: dict[str, Any]) -> None:
        """Returns once the broker has the message (publisher confirm on RabbitMQ)."""
        self.publish_many([(destination, envelope)])

    def publish_many(self, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Publish envelopes bound for destinations, one queue message per lane.

        Envelopes going to the same partition travel together (in their order, at most
        `MAX_BUNDLE` per queue message), so a batch of a few hundred records costs a
        few confirmed publishes instead of one each. Returns the messages published.
        """
        bundles: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for destination, envelope in items:
            self.declare(destination)
            lane = self.lane(destination, self.partition_of(destination, envelope))
            bundles.setdefault((destination, lane), []).append(envelope)
        if self._producer is None:
            self._producer = Producer(self._conn.default_channel, exchange=self._exchange)
        sent = 0
        for (_, lane), envelopes in bundles.items():
            for start in range(0, len(envelopes), MAX_BUNDLE):
                self._producer.publish(
                    encode(envelopes[start : start + MAX_BUNDLE]),
                    routing_key=lane,
                    content_type="application/json",
                    content_encoding="utf-8",
                    delivery_mode=2,
                    retry=True,
                    retry_policy=_RETRY_POLICY,
                )
                sent += 1
        return sent

    def consume(
        self,
        destination: str,
        handle: Callable[[list[dict[str, Any]]], None],
        stop: threading.Event,
        *,
        partition: int | None = None,
        prefetch: int = 8,
        linger: float = 0.005,
    ) -> None:
        """Run `handle` on the envelopes of the queue messages waiting in one partition (what
        arrives within `linger` seconds of the first, up to `prefetch` messages), until `stop`
        is set; ack them after it returns.

        If `handle` raises, the messages are requeued after a pause, so a journal outage
        is ridden out without losing anything.
        """
        self.declare(destination)
        waiting: list[KombuMessage] = []

        def on_message(message: KombuMessage) -> None:
            # Raw bodies, not kombu's decoded ones: its JSON object hook costs more than
            # the rest of the delivery's Python work.
            waiting.append(message)

        with self._conn.Consumer(
            [self.queue_for(destination, partition)], on_message=on_message, prefetch_count=prefetch
        ):
            while not stop.is_set():
                if not self._drain(0.5):  # nothing arrived: look at the stop flag again
                    continue
                deadline = time.monotonic() + linger
                while len(waiting) < prefetch and self._drain(deadline - time.monotonic()):
                    pass
                taken = waiting[:]
                waiting.clear()
                try:
                    handle([env for message in taken for env in decode(message.body)])
                except Exception as exc:  # the messages go back, the loop goes on
                    log.warning("delivery_failed", destination=destination, error=str(exc))
                    stop.wait(1.0)
                    for message in taken:
                        message.requeue()
                    continue
                for message in taken:
                    message.ack()

    def _drain(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the broker; False if nothing came."""
        if timeout <= 0:
            return False
        try:
            self._conn.drain_events(timeout=timeout)
        except TimeoutError:
            return False
        return True

    def publish_retry(self, destination: str, envelope: dict[str, Any], delay: float) -> None:
        """Send the envelope back to `destination`'s queue after `delay` seconds."""
        if not self.capabilities.durable:
            _memory_delays(self.url, self.prefix, self.partitions).schedule(destination, envelope, delay)
            return
        seconds = max(1, round(delay))
        lane = self.lane(destination, self.partition_of(destination, envelope))
        retry_exchange = Exchange(f"{self.prefix}.retry", type="direct", durable=True)
        queue = Queue(
            f"{self.prefix}.{lane}.retry.{seconds}s",
            retry_exchange,
            routing_key=f"{lane}.{seconds}s",
            durable=True,
            queue_arguments={
                "x-message-ttl": seconds * 1000,
                "x-dead-letter-exchange": f"{self.prefix}.records",
                "x-dead-letter-routing-key": lane,
            },
        )
        producer = Producer(self._conn.default_channel, exchange=retry_exchange)
        producer.publish(
            encode([envelope]),
            routing_key=f"{lane}.{seconds}s",
            content_type="application/json",
            content_encoding="utf-8",
            delivery_mode=2,
            declare=[queue],
            retry=True,
            retry_policy=_RETRY_POLICY,
        )

    def waiting(self, destination: str) -> int | None:
        """Queue messages waiting in the in-process transport (None on a broker, which keeps
        its queues on disk and applies its own flow control)."""
        if self.capabilities.durable:
            return None
        channel = self._conn.default_channel
        return sum(
            channel._size(f"{self.prefix}.{self.lane(destination, p)}")  # type: ignore[attr-defined]
            for p in self.lanes(destination)
        )

    def depth(self, destination: str) -> int:
        """Messages ready in a destination's queues, as the broker counts them (passive
        declare: a queue that does not exist yet is an error, not created)."""
        channel = self._conn.default_channel
        total = 0
        for p in self.lanes(destination):
            declared = self.queue_for(destination, p)(channel).queue_declare(passive=True)
            total += int(declared.message_count or 0)
        return total

    def purge(self, destination: str) -> int:
        self.declare(destination)
        channel = self._conn.default_channel
        return sum(self.queue_for(destination, p)(channel).purge() or 0 for p in self.lanes(destination))

    def close(self) -> None:
        self._conn.release()


def encode(envelopes: list[dict[str, Any]]) -> bytes:
    """Compact UTF-8 JSON; pydantic's serialiser is about twice as fast as json.dumps here."""
    return to_json(envelopes)


def decode(body: Any) -> list[dict[str, Any]]:
    """A queue message's envelopes; a lone object (older engines, hand-made) is one envelope."""
    data = from_json(body) if isinstance(body, str | bytes | bytearray) else body
    return data if isinstance(data, list) else [data]


def partition_key(envelope: dict[str, Any]) -> str:
    """What keeps one person's records in one partition: the HIS id of the sending system,
    else the ID card, else the record itself."""
    person = (envelope.get("record") or {}).get("person") or {}
    if person.get("his_id"):
        return f"his:{person.get('his_system') or ''}:{person['his_id']}"
    if person.get("id_card"):
        return f"id:{person['id_card']}"
    return f"record:{envelope.get('record_id', '')}"


class _MemoryDelays:
    """In-process delayed retries: a heap of (due, destination, envelope) and one thread."""

    def __init__(self, url: str, prefix: str, partitions: Mapping[str, int]) -> None:
        self.url = url
        self.prefix = prefix
        self.partitions = dict(partitions)
        self._heap: list[tuple[float, int, str, dict[str, Any]]] = []
        self._cond = threading.Condition()
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="memory-retries", daemon=True)
        self._thread.start()

    def schedule(self, destination: str, envelope: dict[str, Any], delay: float) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (time.monotonic() + delay, self._seq, destination, envelope))
            self._cond.notify()

    def _run(self) -> None:
        bus: Bus | None = None
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                _, _, destination, envelope = heapq.heappop(self._heap)
            try:
                bus = bus or Bus(self.url, self.prefix, self.partitions)
                bus.publish(destination, envelope)
            except Exception as exc:  # the journal still says pending: a restart re-drives it
                log.warning("memory_retry_publish_failed", destination=destination, error=str(exc))
                bus = None


_delays: dict[tuple[str, str], _MemoryDelays] = {}
_delays_lock = threading.Lock()


def _memory_delays(url: str, prefix: str, partitions: Mapping[str, int]) -> _MemoryDelays:
    with _delays_lock:
        key = (url, prefix)
        if key not in _delays:
            _delays[key] = _MemoryDelays(url, prefix, partitions)
        return _delays[key]
