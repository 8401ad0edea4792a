"""A small MLLP receiver for tests of senders: answers each frame as a test script says."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass

from channels.mllp.framing import Frame, MllpDecoder, frame


@dataclass(frozen=True, slots=True)
class Answer:
    code: str | None  # MSA-1, or None: say nothing (the sender times out)
    text: str = ""  # MSA-3 and ERR-8


def control_id_of(payload: bytes) -> str:
    head = payload.split(b"\r", 1)[0]
    fields = head.split(head[3:4]) if len(head) > 3 else []
    return fields[9].decode("ascii", "replace") if len(fields) > 9 else ""


def ack_for(payload: bytes, answer: Answer) -> bytes:
    control = control_id_of(payload)
    text = (
        f"MSH|^~\\&|RCV|RCV|MCHENGINE|FY01|20240321120000||ACK|A-{control}|P|2.5\rMSA|{answer.code}|{control}"
    )
    if answer.text:
        text += f"|{answer.text}\rERR||PID^1^5|207^Application internal error^HL70357|E||||{answer.text}"
    return (text + "\r").encode("utf-8")


class MllpReceiver:
    """Listens on 127.0.0.1 in a thread of its own; `script(payload, n)` gives the answer to the
    n-th frame (1-based). Keeps every frame received and counts connections. With `tls` it
    speaks MLLP over TLS, and keeps the subject CN of each client certificate presented."""

    def __init__(self, script: Callable[[bytes, int], Answer], tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.client_names: list[str | None] = []
        self.received: list[bytes] = []
        self.connections = 0
        self.open_now = 0
        self.most_open = 0
        self.port = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None

    def __enter__(self) -> MllpReceiver:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=self.tls), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.tls is not None:
            self.client_names.append(_common_name(writer.get_extra_info("peercert")))
        with self._lock:
            self.connections += 1
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)
        decoder = MllpDecoder(1 << 24)
        try:
            while data := await reader.read(65536):
                for event in decoder.feed(data):
                    if not isinstance(event, Frame):
                        continue
                    with self._lock:
                        self.received.append(event.payload)
                        n = len(self.received)
                    answer = self.script(event.payload, n)
                    if answer.code is not None:
                        writer.write(frame(ack_for(event.payload, answer)))
                        await writer.drain()
        except ConnectionError:
            pass
        finally:
            with self._lock:
                self.open_now -= 1
            writer.close()
            with contextlib.suppress(ConnectionError, asyncio.CancelledError):
                await writer.wait_closed()


def _common_name(cert: dict | None) -> str | None:
    """The subject CN of a verified peer certificate (None: none was presented)."""
    for rdn in (cert or {}).get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return None
