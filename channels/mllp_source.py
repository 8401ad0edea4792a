"""MLLP source channel: HL7 v2 over TCP, answered only after the journal commit.

Supports many concurrent connections, pipelined frames (answers keep the order of
the frames on each connection), segments ended by CR, LF or CRLF, FHS/BHS batches
(one ACK per message, wrapped in BHS/BTS), a per-channel charset with MSH-18
taking precedence, a maximum message size and an idle timeout. Settings
(`routes.yaml`):

    channels:
      lis_results:
        type: mllp
        listen: 0.0.0.0:6662
        encoding: gb18030          # MSH-18 wins when it names a known charset
        max_message_bytes: 1MiB
        idle_timeout: 5m
        ack: {mode: original}      # or enhanced (CA/CR per MSH-15)

What a sender gets for bad input is described in docs/mllp.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from dataclasses import dataclass

import structlog

from channels._mllp_framing import BadFrame, Frame, MllpDecoder, frame
from engine.ack import build_ack, wrap_batch
from engine.errors import StartupError
from engine.ingest import Policy, Verdict, examine, reject
from engine.journal import REJECTED, Entry, JournalWriter, Written
from transforms.hl7v2 import read_msh

log = structlog.get_logger("channels.mllp")

_PAUSE_AT = 512  # frames awaiting their ACK on one connection before we stop reading
_RESUME_AT = 64


@dataclass(slots=True)
class MllpCounters:
    connections: int = 0
    open_connections: int = 0
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0
    journal_errors: int = 0


@dataclass(frozen=True, slots=True)
class MllpConfig:
    name: str
    host: str
    port: int
    policy: Policy
    max_message_bytes: int = 1 << 20
    idle_timeout: float = 300.0


@dataclass(slots=True)
class _Pending:
    verdicts: list[Verdict]
    futures: list[asyncio.Future[Written]]
    batch_head: bytes | None = None


class MllpSource:
    """One listening MLLP channel."""

    def __init__(self, config: MllpConfig, journal: JournalWriter) -> None:
        self.config = config
        self.journal = journal
        self.counters = MllpCounters()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self), self.config.host, self.config.port, reuse_address=True
            )
        except OSError as exc:
            where = f"{self.config.host}:{self.config.port}"
            raise StartupError(f"channel {self.name}: cannot listen on {where}: {exc.strerror}") from exc
        log.info("channel_listening", channel=self.name, host=self.config.host, port=self.port)

    @property
    def port(self) -> int:
        """The bound port (useful when the settings asked for port 0)."""
        if self._server and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self.config.port

    async def stop(self, grace: float = 10.0) -> None:
        """Stop accepting, let open connections finish their pending ACKs, then close."""
        if self._server:
            self._server.close()
        waits = [c.drain_and_close() for c in list(self._connections)]
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), grace)
        if self._server:
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    def __init__(self, source: MllpSource) -> None:
        self.source = source
        self.cfg = source.config
        self.decoder = MllpDecoder(self.cfg.max_message_bytes)
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.pending: deque[_Pending] = deque()
        self.wakeup = asyncio.Event()
        self.closing = False
        self.paused = False
        self.writer: asyncio.Task[None] | None = None
        self.idle: asyncio.TimerHandle | None = None

    # asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer or "")
        self.source._connections.add(self)
        self.source.counters.connections += 1
        self.source.counters.open_connections += 1
        self.writer = asyncio.get_running_loop().create_task(self._write_acks())
        self._arm_idle()

    def data_received(self, data: bytes) -> None:
        self._arm_idle()
        for event in self.decoder.feed(data):
            self._handle(event)
        if self.decoder.stray_size > self.cfg.max_message_bytes:
            # A peer that does not speak MLLP: keep what it sent, then hang up.
            for event in self.decoder.finish():
                self._handle(event)
            self._close_after_pending()

    def eof_received(self) -> bool | None:
        for event in self.decoder.finish():
            self._handle(event)
        self._close_after_pending()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        for event in self.decoder.finish():
            self._handle(event)
        self.closing = True
        self.wakeup.set()
        if self.idle:
            self.idle.cancel()
        self.source._connections.discard(self)
        self.source.counters.open_connections -= 1

    # frames ------------------------------------------------------------------------

    def _handle(self, event: Frame | BadFrame) -> None:
        counters = self.source.counters
        policy = self.cfg.policy
        if isinstance(event, Frame):
            verdicts = examine(event.payload, policy, self.peer)
            batch_head = event.payload[:64] if len(verdicts) > 1 else None
        elif event.kind == "stray":
            entry = Entry(
                channel=policy.channel,
                raw=event.payload,
                status=REJECTED,
                ack="",
                ack_code="",
                error=event.reason(self.cfg.max_message_bytes),
                peer=self.peer,
            )
            log.warning("mllp_stray_bytes", channel=policy.channel, peer=self.peer, size=event.size)
            self.source.journal.submit(entry)
            counters.rejected += 1
            return
        else:
            reason = event.reason(self.cfg.max_message_bytes)
            log.warning("mllp_bad_frame", channel=policy.channel, peer=self.peer, reason=reason)
            verdicts = [reject(event.payload, policy, reason, self.peer)]
            batch_head = None
        counters.received += len(verdicts)
        futures = [asyncio.wrap_future(self.source.journal.submit(v.entry)) for v in verdicts]
        self.pending.append(_Pending(verdicts, futures, batch_head))
        self.wakeup.set()
        if len(self.pending) >= _PAUSE_AT and self.transport and not self.paused:
            self.transport.pause_reading()
            self.paused = True

    async def _write_acks(self) -> None:
        counters = self.source.counters
        while True:
            while not self.pending:
                if self.closing:
                    self._shutdown()
                    return
                self.wakeup.clear()
                await self.wakeup.wait()
            item = self.pending[0]
            acks: list[str] = []
            encoding = item.verdicts[0].encoding
            for verdict, fut in zip(item.verdicts, item.futures, strict=True):
                try:
                    written = await fut
                except Exception as exc:
                    counters.journal_errors += 1
                    log.error("journal_unavailable", channel=self.cfg.name, error=str(exc))
                    acks.append(_journal_error_ack(verdict, exc, self.cfg.policy.ack_mode))
                    continue
                if verdict.entry.status == REJECTED:
                    counters.rejected += 1
                elif written.duplicate:
                    counters.duplicates += 1
                else:
                    counters.accepted += 1
                ack = written.ack if written.duplicate else verdict.ack
                if ack:
                    acks.append(ack)
            self.pending.popleft()
            if self.paused and len(self.pending) <= _RESUME_AT and self.transport:
                self.transport.resume_reading()
                self.paused = False
            if not acks or self.transport is None or self.transport.is_closing():
                continue
            text = wrap_batch(acks, item.batch_head) if item.batch_head else "".join(acks)
            self.transport.write(frame(text.encode(encoding, errors="replace")))

    # lifecycle -----------------------------------------------------------------------

    def _arm_idle(self) -> None:
        if self.idle:
            self.idle.cancel()
        loop = asyncio.get_running_loop()
        self.idle = loop.call_later(self.cfg.idle_timeout, self._on_idle)

    def _on_idle(self) -> None:
        log.info("mllp_idle_timeout", channel=self.cfg.name, peer=self.peer)
        for event in self.decoder.finish():
            self._handle(event)
        self._close_after_pending()

    def _close_after_pending(self) -> None:
        self.closing = True
        self.wakeup.set()

    def _shutdown(self) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.close()

    async def drain_and_close(self) -> None:
        if self.transport:
            self.transport.pause_reading()
        self._close_after_pending()
        if self.writer:
            with contextlib.suppress(asyncio.CancelledError):
                await self.writer


def _journal_error_ack(verdict: Verdict, exc: Exception, mode: str) -> str:
    """The journal could not commit: tell the sender to send again (AE / CE)."""
    try:
        msh = read_msh(verdict.entry.raw)
    except Exception:
        msh = None
    code = "CE" if mode == "enhanced" and msh and msh.accept_ack else "AE"
    text = "message not stored (journal unavailable); please send it again"
    return build_ack(msh, code, text=text, error_code="207")
