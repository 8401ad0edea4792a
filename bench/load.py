"""The load generator: C connections behaving like hospital senders.

Each connection works in lock step (send a frame, wait for its ACK, send the next), as
most HIS/LIS interfaces do; `window` > 1 keeps that many frames in flight per
connection (pipelining, answered in order). Every ACK is checked: MSA-1 must be AA or
CA and MSA-2 must be the control id of the frame it answers, else it counts as an error
with a sample kept for the report. Latency is measured per message from the write of
its frame to the arrival of its ACK's last byte.

Written on asyncio protocols rather than streams, and with one watchdog instead of a
`wait_for` per message: the generator shares two cores with the server it measures,
so every microsecond it spends per message is taken from the server. uvloop is used
when it happens to be installed (it is not a dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.messages import MessageFactory, Outgoing
from bench.mllp import FrameSplitter, frame

T = TypeVar("T")

ACCEPT_CODES = frozenset({b"AA", b"CA"})


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run, on uvloop's loop when uvloop is importable."""
    try:
        import uvloop  # type: ignore[import-not-found]
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:  # pragma: no cover
        return runner.run(main)


def loop_name() -> str:
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"  # pragma: no cover


def check_ack(ack: bytes, control_id: bytes) -> str:
    """'' when the ACK accepts `control_id`, else what is wrong with it.

    Read at the byte level: MSA-1 and MSA-2 are ASCII and come before any free text,
    CR never occurs inside a GB18030 or UTF-8 character, and a GB18030 trail byte can
    only be `|` after a lead byte ≥ 0x81, which cannot precede MSA-1 or MSA-2.
    """
    start = ack.find(b"\rMSA")
    if start < 0:
        return "no MSA segment in the answer"
    end = ack.find(b"\r", start + 1)
    seg = ack[start + 1 : end if end > 0 else len(ack)]
    if len(seg) < 4:
        return "empty MSA segment"
    fields = seg.split(seg[3:4], 3)
    code = fields[1] if len(fields) > 1 else b""
    echoed = fields[2] if len(fields) > 2 else b""
    if code not in ACCEPT_CODES:
        text = fields[3][:160].decode("utf-8", "replace") if len(fields) > 3 else ""
        return f"MSA-1 {code.decode('ascii', 'replace') or '(empty)'} {text}".strip()
    if echoed != control_id:
        return f"MSA-2 {echoed.decode('ascii', 'replace')!r} is not the control id sent"
    return ""


@dataclass
class LoadResult:
    """What one load run saw. Latencies are in seconds, of the ACKs inside the window."""

    target: str
    connections: int
    window: int
    sent: int = 0
    acked: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    latencies: array[float] = field(default_factory=lambda: array("d"))
    measured_acks: int = 0
    measured_seconds: float = 0.0
    started_wall: float = 0.0  # time.time() when the first frame was sent
    started_perf: float = 0.0
    send_perf: dict[str, float] | None = None  # control id → perf_counter at send, when asked

    @property
    def rate(self) -> float:
        return self.measured_acks / self.measured_seconds if self.measured_seconds > 0 else 0.0

    def percentile(self, q: float) -> float:
        return percentile(sorted(self.latencies), q)

    def send_wall(self, control_id: str) -> float | None:
        """Wall-clock send time of a message (needs `record_sends`)."""
        if self.send_perf is None or control_id not in self.send_perf:
            return None
        return self.started_wall + (self.send_perf[control_id] - self.started_perf)

    def note_error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 5:
            self.error_samples.append(text)


def percentile(ordered: Any, q: float) -> float:
    """Nearest-rank percentile of an ascending sequence (0 when empty)."""
    n = len(ordered)
    if not n:
        return 0.0
    rank = min(n - 1, max(0, int(q / 100.0 * n + 0.5) - 1))
    return float(ordered[rank])


class _Client(asyncio.Protocol):
    """One MLLP connection: frames out, ACK frames matched in order to their waiters."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.splitter = FrameSplitter()
        self.waiters: deque[asyncio.Future[tuple[bytes, float]]] = deque()
        self.last_activity = time.monotonic()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        self.last_activity = time.monotonic()
        for payload in self.splitter.feed(data):
            if self.waiters:
                fut = self.waiters.popleft()
                if not fut.done():
                    fut.set_result((payload, now))

    def connection_lost(self, exc: Exception | None) -> None:
        err = ConnectionError(f"connection closed by the server ({exc or 'EOF'})")
        while self.waiters:
            fut = self.waiters.popleft()
            if not fut.done():
                fut.set_exception(err)
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, data: bytes) -> asyncio.Future[tuple[bytes, float]]:
        assert self.transport is not None
        fut: asyncio.Future[tuple[bytes, float]] = asyncio.get_running_loop().create_future()
        if not self.waiters:
            self.last_activity = time.monotonic()
        self.waiters.append(fut)
        self.transport.write(data)
        return fut


async def run_load(
    host: str,
    port: int,
    factory: MessageFactory,
    *,
    target: str,
    connections: int,
    window: int = 1,
    duration: float | None = None,
    count: int | None = None,
    warmup: float = 0.0,
    rate: float | None = None,
    timeout: float = 30.0,
    first_seq: int = 0,
    record_sends: bool = False,
    progress: Callable[[int], None] | None = None,
    progress_every: int = 1000,
) -> LoadResult:
    """Send until `duration` seconds have passed (after `warmup`) or `count` messages were sent.

    With a duration, only ACKs that arrive after the warm-up and before the end are
    counted and their latencies kept. With a count, every message counts. `rate`
    (messages per second, all connections together) paces the senders for
    open-loop-like end-to-end runs. `progress` is called with the number of ACKs so far,
    every `progress_every` ACKs (the soak samples memory with it).
    """
    if (duration is None) == (count is None):
        raise ValueError("give exactly one of duration and count")
    loop = asyncio.get_running_loop()
    result = LoadResult(target, connections, window)
    result.send_perf = {} if record_sends else None
    next_seq = first_seq
    limit = first_seq + count if count is not None else None
    started = time.perf_counter()
    result.started_perf, result.started_wall = started, time.time()
    measure_from = started + warmup
    stop_at = measure_from + duration if duration is not None else float("inf")
    measured = 0
    lat = result.latencies
    clients: list[_Client] = []

    def take() -> Outgoing | None:
        nonlocal next_seq
        if (limit is not None and next_seq >= limit) or time.perf_counter() >= stop_at:
            return None
        msg = factory.message(next_seq)
        next_seq += 1
        return msg

    async def pace(seq: int) -> None:
        if rate:
            due = started + (seq - first_seq) / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)

    async def connect() -> _Client:
        _, proto = await loop.create_connection(_Client, host, port)
        clients.append(proto)
        return proto

    async def sender() -> None:
        nonlocal measured
        client: _Client | None = None
        inflight: deque[tuple[Outgoing, float, asyncio.Future[tuple[bytes, float]]]] = deque()
        exhausted = False
        while True:
            while not exhausted and len(inflight) < window:
                msg = take()
                if msg is None:
                    exhausted = True
                    break
                await pace(msg.seq)
                try:
                    if client is None or client.closed.done():
                        client = await connect()
                    t0 = time.perf_counter()
                    fut = client.send(frame(msg.payload))
                except OSError as exc:
                    result.sent += 1
                    result.note_error(f"{msg.control_id}: cannot send: {exc}")
                    client = None
                    await asyncio.sleep(0.05)
                    continue
                result.sent += 1
                if result.send_perf is not None:
                    result.send_perf[msg.control_id] = t0
                inflight.append((msg, t0, fut))
            if not inflight:
                break
            msg, t0, fut = inflight.popleft()
            try:
                ack, t1 = await fut
            except (ConnectionError, OSError) as exc:
                result.note_error(f"{msg.control_id}: {exc}")
                client = None
                continue
            problem = check_ack(ack, msg.control_id.encode("ascii"))
            if problem:
                result.note_error(f"{msg.control_id}: {problem}")
                continue
            result.acked += 1
            if progress is not None and result.acked % progress_every == 0:
                progress(result.acked)
            if measure_from <= t1 <= stop_at:
                measured += 1
                lat.append(t1 - t0)
        if client is not None and client.transport is not None:
            client.transport.close()

    async def watchdog() -> None:
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            now = time.monotonic()
            for c in clients:
                if c.waiters and now - c.last_activity > timeout and c.transport is not None:
                    c.transport.abort()  # its waiters fail; the sender reconnects

    dog = asyncio.create_task(watchdog())
    try:
        await asyncio.gather(*(sender() for _ in range(connections)))
    finally:
        dog.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await dog
    ended = time.perf_counter()
    result.measured_acks = measured
    if duration is not None:
        result.measured_seconds = min(ended, stop_at) - measure_from
    else:
        result.measured_seconds = ended - started
    return result
