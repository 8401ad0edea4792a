"""A small MLLP sender, for `mch-engine send`, the tests and the benchmarks.

Each connection works in lock step: it sends a frame and waits for the answer
before the next one, as most hospital systems do. Several connections run at
once when asked. With an SSL context (channels/mllp/tls.py `client_context`) it speaks
MLLP over TLS, to test a channel that has `tls:`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass

from channels.mllp.framing import Frame, MllpDecoder, frame


@dataclass(frozen=True, slots=True)
class Exchange:
    index: int  # position of the payload in the input
    ack: bytes | None  # None: the connection closed or timed out first
    seconds: float
    error: str = ""
    refused: bool = False  # no connection could be opened (nothing listening there?)


class MllpConnection:
    """One lock-step MLLP connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.decoder = MllpDecoder(64 << 20)
        self.frames: list[bytes] = []

    @classmethod
    async def open(
        cls, host: str, port: int, tls: ssl.SSLContext | None = None, server_name: str | None = None
    ) -> MllpConnection:
        """`server_name`: the name the engine's certificate must carry (default `host`)."""
        reader, writer = await asyncio.open_connection(
            host, port, ssl=tls, server_hostname=(server_name or host) if tls else None
        )
        return cls(reader, writer)

    async def send(self, payload: bytes, timeout: float = 30.0) -> bytes:
        self.writer.write(frame(payload))
        await self.writer.drain()
        return await self.receive(timeout)

    async def receive(self, timeout: float = 30.0) -> bytes:
        while not self.frames:
            data = await asyncio.wait_for(self.reader.read(65536), timeout)
            if not data:
                raise ConnectionError("connection closed by the engine before it answered")
            self.frames += [e.payload for e in self.decoder.feed(data) if isinstance(e, Frame)]
        return self.frames.pop(0)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await self.writer.wait_closed()


async def send_all(
    host: str,
    port: int,
    payloads: Sequence[bytes],
    *,
    concurrency: int = 1,
    timeout: float = 30.0,
    give_up_after: int | None = None,
    tls: ssl.SSLContext | None = None,
    server_name: str | None = None,
) -> list[Exchange]:
    """Send every payload once, over `concurrency` lock-step connections. With
    `give_up_after`, stop after that many connection attempts in a row fail: the
    payloads not tried have no `Exchange`."""
    results: list[Exchange | None] = [None] * len(payloads)
    next_index = 0
    refused_in_a_row = 0

    async def worker() -> None:
        nonlocal next_index, refused_in_a_row
        conn: MllpConnection | None = None
        while next_index < len(payloads):
            if give_up_after is not None and refused_in_a_row >= give_up_after:
                break
            i = next_index
            next_index += 1
            started = time.perf_counter()
            try:
                if conn is None:
                    try:
                        conn = await MllpConnection.open(host, port, tls, server_name)
                    except OSError as exc:
                        refused_in_a_row += 1
                        error = str(exc) or type(exc).__name__
                        results[i] = Exchange(i, None, time.perf_counter() - started, error, refused=True)
                        continue
                    refused_in_a_row = 0
                ack = await conn.send(payloads[i], timeout)
                results[i] = Exchange(i, ack, time.perf_counter() - started)
            except (OSError, ConnectionError, TimeoutError) as exc:
                results[i] = Exchange(i, None, time.perf_counter() - started, str(exc) or type(exc).__name__)
                if conn is not None:
                    await conn.close()
                conn = None
        if conn is not None:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(payloads))))))
    return [r for r in results if r is not None]
