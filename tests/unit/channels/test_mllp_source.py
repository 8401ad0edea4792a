"""Unit tests for the MLLP listener's answering: order, idle timeout, journal failures."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

import pytest

from channels.intake.examine import Policy
from channels.mllp.framing import Frame, MllpDecoder, frame
from channels.mllp.source import MllpConfig, MllpSource
from core.journal import Entry, Outcome, Written


def adt(control_id: str) -> bytes:
    return (
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|{control_id}|P|2.5\r"
        "EVN|A04|20240321083200\r"
    ).encode()


class HeldJournal:
    """Keeps every submission until the test decides its outcome (and in which order)."""

    def __init__(self) -> None:
        self.waiting: list[tuple[Entry, asyncio.AbstractEventLoop, Callable[[Outcome], None]]] = []
        self.arrived = asyncio.Event()

    def submit(self, entry: Entry) -> Future[Written]:
        return Future()

    def submit_to(
        self, entry: Entry, loop: asyncio.AbstractEventLoop, sink: Callable[[Outcome], None]
    ) -> None:
        self.waiting.append((entry, loop, sink))
        self.arrived.set()

    def settle(self, index: int, outcome: Outcome | None = None) -> None:
        entry, loop, sink = self.waiting[index]
        loop.call_soon_threadsafe(sink, outcome or Written(index + 1, False, entry.ack))


async def read_frames(reader: asyncio.StreamReader, count: int, timeout: float = 5.0) -> list[bytes]:
    decoder = MllpDecoder(1 << 20)
    frames: list[bytes] = []
    while len(frames) < count:
        chunk = await asyncio.wait_for(reader.read(65536), timeout)
        if not chunk:
            break
        frames += [e.payload for e in decoder.feed(chunk) if isinstance(e, Frame)]
    return frames


async def answered_within(reader: asyncio.StreamReader, seconds: float) -> bool:
    try:
        await asyncio.wait_for(reader.readexactly(1), seconds)
    except TimeoutError:
        return False
    return True


def msa2(ack: bytes) -> str:
    msa = next(seg for seg in ack.split(b"\r") if seg.startswith(b"MSA"))
    return msa.split(b"|")[2].decode()


async def started(journal: Any, idle_timeout: float = 300.0) -> MllpSource:
    config = MllpConfig("hospital", "127.0.0.1", 0, Policy("hospital"), idle_timeout=idle_timeout)
    source = MllpSource(config, journal)
    await source.start()
    return source


def test_pipelined_frames_are_answered_in_order_whatever_order_the_journal_answers() -> None:
    """Frame 2 committed before frame 1 still gets its ACK after frame 1's."""

    async def scenario() -> list[str]:
        journal = HeldJournal()
        source = await started(journal)
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        writer.write(frame(adt("P1")) + frame(adt("P2")) + frame(adt("P3")))
        while len(journal.waiting) < 3:
            journal.arrived.clear()
            await asyncio.wait_for(journal.arrived.wait(), 5)
        journal.settle(2)
        journal.settle(1)
        assert not await answered_within(reader, 0.1)  # nothing may overtake P1's answer
        journal.settle(0)
        answers = await read_frames(reader, 3)
        writer.close()
        await source.stop()
        return [msa2(a) for a in answers]

    assert asyncio.run(scenario()) == ["P1", "P2", "P3"]


def test_journal_failure_is_answered_ae_asking_to_send_again() -> None:
    async def scenario() -> bytes:
        journal = HeldJournal()
        source = await started(journal)
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        writer.write(frame(adt("E1")))
        await asyncio.wait_for(journal.arrived.wait(), 5)
        journal.settle(0, RuntimeError("database is down"))
        (answer,) = await read_frames(reader, 1)
        writer.close()
        await source.stop()
        assert source.counters.journal_errors == 1
        return answer

    answer = asyncio.run(scenario())
    assert b"MSA|AE|E1|" in answer and b"please send it again" in answer


@pytest.mark.parametrize("keep_talking", [False, True])
def test_idle_timeout_counts_from_the_last_bytes_received(keep_talking: bool) -> None:
    """A quiet connection is closed after the idle timeout; one that keeps sending is not."""

    async def scenario() -> bool:
        journal = HeldJournal()
        source = await started(journal, idle_timeout=0.3)
        reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
        for _ in range(6):
            await asyncio.sleep(0.1)
            if keep_talking:
                writer.write(b"\r")  # whitespace between frames: data, but not a frame
        try:
            closed = await asyncio.wait_for(reader.read(1), 0.1) == b""
        except TimeoutError:
            closed = False
        writer.close()
        await source.stop()
        return closed

    closed = asyncio.run(scenario())
    assert closed is not keep_talking
