"""MLLP source channel: HL7 v2 over TCP, answered only after the journal commit.

Supports many concurrent connections, pipelined frames (answers keep the order of
the frames on each connection), segments ended by CR, LF or CRLF, FHS/BHS batches
(one ACK per message, wrapped in BHS/BTS), a per-channel charset with MSH-18
taking precedence, a maximum message size, an idle timeout, and an edge for hospital
networks: TLS, a sender allow-list, connection limits and a deadline per frame (a sender
dripping bytes cannot hold a connection). Settings (`routes.yaml`):

    channels:
      lis_results:
        type: mllp
        listen: 0.0.0.0:6662
        encoding: gb18030          # MSH-18 wins when it names a known charset
        max_message_bytes: 1MiB
        idle_timeout: 5m
        ack: {mode: original}      # or enhanced (CA/CR per MSH-15)
        frame_deadline: 30s
        tls: {certificate: tls/lis.crt, key: tls/lis.key, client_ca: tls/hospital-ca.crt}
        allow: [10.1.2.0/24, 10.1.3.7]
        max_connections: 200
        max_connections_per_address: 20

What a sender gets for bad input is described in docs/mllp.md.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from dataclasses import dataclass, field
from functools import partial

import structlog

from channels.intake.examine import Policy, Verdict
from channels.mllp.ack import build_ack, wrap_batch
from channels.mllp.edge import Gate, Limits
from channels.mllp.framing import BadFrame, Frame, MllpDecoder, frame
from channels.mllp.ingest import examine, reject
from core.clock import now_utc
from core.errors import StartupError
from core.journal import REJECTED, Entry, Journal, Outcome, Refused, Written
from core.sources import SourceCounters
from transforms.batch import is_batch
from transforms.hl7v2 import read_msh

log = structlog.get_logger("channels.mllp")

_PAUSE_AT = 512  # frames awaiting their ACK on one connection before we stop reading
_RESUME_AT = 64
# Answers written but not yet taken by the peer: past the high mark we stop reading its frames,
# so a sender that never reads its ACKs cannot make the engine buffer without bound.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024


@dataclass(slots=True)
class MllpCounters(SourceCounters):
    connections: int = 0
    open_connections: int = 0
    not_allowed: int = 0  # closed at once: the address is not in `allow`
    over_limit: int = 0  # closed at once: max_connections or max_connections_per_address reached
    tls_failed: int = 0  # the TLS handshake failed (plain text on a TLS port, a refused certificate)
    frame_deadline: int = 0  # closed: a frame began and did not end within `frame_deadline`

    @property
    def closed(self) -> dict[str, int]:
        """Connections the edge closed, by reason (status and metrics show them per channel)."""
        return {
            "not_allowed": self.not_allowed,
            "over_limit": self.over_limit,
            "tls_failed": self.tls_failed,
            "frame_deadline": self.frame_deadline,
        }


@dataclass(frozen=True, slots=True)
class MllpConfig:
    name: str
    host: str
    port: int
    policy: Policy
    max_message_bytes: int = 1 << 20
    idle_timeout: float = 300.0
    frame_deadline: float = 30.0
    tls: ssl.SSLContext | None = None
    limits: Limits = field(default_factory=Limits)


class _Pending:
    """The messages of one frame, waiting for their journal outcomes (answered in order)."""

    __slots__ = ("batch_head", "left", "outcomes", "verdicts")

    def __init__(self, verdicts: list[Verdict], batch_head: bytes | None) -> None:
        self.verdicts = verdicts
        self.batch_head = batch_head
        self.outcomes: list[Outcome | None] = [None] * len(verdicts)
        self.left = len(verdicts)


class MllpSource:
    """One listening MLLP channel."""

    def __init__(self, config: MllpConfig, journal: Journal) -> None:
        self.config = config
        self.journal = journal
        self.counters = MllpCounters()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self.gate = Gate()
        self._handshakes: set[asyncio.Task[None]] = set()

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:
        await self.bind()
        await self.serve()

    async def bind(self) -> None:
        """Take the address without accepting yet, so a reload can find a port in use before
        it changes anything (engine/live_reload.py)."""
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self),
                self.config.host,
                self.config.port,
                reuse_address=True,
                start_serving=False,
            )
        except OSError as exc:
            where = f"{self.config.host}:{self.config.port}"
            raise StartupError(f"channel {self.name}: cannot listen on {where}: {exc.strerror}") from exc

    async def serve(self) -> None:
        assert self._server is not None, "bind() first"
        await self._server.start_serving()
        log.info("channel_listening", channel=self.name, host=self.config.host, port=self.port)

    def reconfigure(self, config: MllpConfig) -> None:
        """New settings for the same address: open connections keep going and use them
        from their next frame (the size limit of a frame being read applies as it began)."""
        self.config = config
        for connection in self._connections:
            connection.decoder.max_bytes = config.max_message_bytes

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
        for task in list(self._handshakes):
            task.cancel()
        waits = [c.drain_and_close() for c in list(self._connections)]
        if waits:
            await asyncio.wait_for(asyncio.gather(*waits, return_exceptions=True), grace)
        if self._server:
            await self._server.wait_closed()


class _Connection(asyncio.Protocol):
    """One sender's connection: frames in, ACKs out in frame order once journaled.

    Driven by callbacks alone (no task per connection): the journal's outcomes arrive
    through `_journaled`, and whatever is complete at the head of the queue is answered.
    """

    def __init__(self, source: MllpSource) -> None:
        self.source = source
        self.decoder = MllpDecoder(self.cfg.max_message_bytes)
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.peer = ""
        self.pending: deque[_Pending] = deque()
        self.closing = False
        self.paused = False
        self.write_blocked = False  # the peer is not taking its answers (transport past WRITE_HIGH)
        self.drained: asyncio.Future[None] | None = None
        self.idle: asyncio.TimerHandle | None = None
        self.last_data = 0.0
        self.address = ""  # the peer's host, as the gate counts it
        self.admitted = False  # holds a place in the gate (released once)
        self.reading = False  # past the gate and the TLS handshake: frames are read
        self.early = bytearray()  # TLS: bytes that came with the handshake's end, before `_begin`
        self.deadline: asyncio.TimerHandle | None = None
        self.deadline_span = 0  # the decoder's `started` the running deadline is for

    @property
    def cfg(self) -> MllpConfig:
        """The channel's current settings (a reload may replace them between frames)."""
        return self.source.config

    # asyncio callbacks -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """The gate first (nothing is read from a refused connection), then TLS, then frames."""
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if isinstance(peer, tuple) else str(peer or "")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else self.address
        counters = self.source.counters
        refusal = self.source.gate.refusal(self.address, self.cfg.limits)
        if refusal is not None:
            setattr(counters, refusal, getattr(counters, refusal) + 1)
            log.warning("mllp_connection_refused", channel=self.cfg.name, peer=self.peer, reason=refusal)
            transport.close()
            return
        self.source.gate.enter(self.address)
        self.admitted = True
        if self.cfg.tls is None:
            self._begin(transport)
            return
        task = self.loop.create_task(self._handshake(transport, self.cfg.tls))
        self.source._handshakes.add(task)
        task.add_done_callback(self.source._handshakes.discard)

    async def _handshake(self, raw: asyncio.BaseTransport, context: ssl.SSLContext) -> None:
        """TLS before any frame; a failure is logged with its reason and counted, and only this
        connection ends. The handshake too must finish within `frame_deadline`."""
        try:
            wrapped = await self.loop.start_tls(
                raw,  # type: ignore[arg-type]
                self,
                context,
                server_side=True,
                ssl_handshake_timeout=self.cfg.frame_deadline,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError and a handshake timeout included
            self.source.counters.tls_failed += 1
            reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
            log.warning("mllp_tls_failed", channel=self.cfg.name, peer=self.peer, reason=reason)
            raw.close()
            self._release()
            return
        except asyncio.CancelledError:  # the channel stops
            raw.close()
            self._release()
            raise
        self._begin(wrapped)

    def _begin(self, transport: asyncio.BaseTransport) -> None:
        self.reading = True
        self.transport = transport  # type: ignore[assignment]
        self.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        self.source._connections.add(self)
        self.source.counters.connections += 1
        self.source.counters.open_connections += 1
        self.last_data = self.loop.time()
        self.idle = self.loop.call_at(self.last_data + self.cfg.idle_timeout, self._check_idle)
        if self.early:
            early, self.early = bytes(self.early), bytearray()
            self.data_received(early)

    def data_received(self, data: bytes) -> None:
        if not self.reading:  # the TLS layer hands on data before start_tls() returns
            self.early += data
            return
        # The idle timer is not re-armed per read: it looks at this time when it fires.
        self.last_data = self.loop.time()
        for event in self.decoder.feed(data):
            self._handle(event)
        self._watch_frame()
        if self.decoder.stray_size > self.cfg.max_message_bytes:
            # A peer that does not speak MLLP: keep what it sent, then hang up.
            for event in self.decoder.finish():
                self._handle(event)
            self._close_after_pending()

    def pause_writing(self) -> None:
        self.write_blocked = True
        self._flow()

    def resume_writing(self) -> None:
        self.write_blocked = False
        self._flow()

    def eof_received(self) -> bool | None:
        if not self.reading:
            return None
        for event in self.decoder.finish():
            self._handle(event)
        self._close_after_pending()
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self._release()
        if not self.reading:
            return
        if self.deadline:
            self.deadline.cancel()
        for event in self.decoder.finish():
            self._handle(event)
        self.closing = True
        if self.idle:
            self.idle.cancel()
        self.source._connections.discard(self)
        self.source.counters.open_connections -= 1
        self._answer()

    # frames ------------------------------------------------------------------------

    def _handle(self, event: Frame | BadFrame) -> None:
        counters = self.source.counters
        policy = self.cfg.policy
        arrived = now_utc()  # the journal's commit time minus this is the ACK latency
        if isinstance(event, Frame):
            verdicts = examine(event.payload, policy, self.peer)
            batch_head = event.payload[:64] if is_batch(event.payload) else None
        elif event.kind == "stray":
            entry = Entry(
                channel=policy.channel,
                raw=event.payload,
                status=REJECTED,
                ack="",
                ack_code="",
                error=event.reason(self.cfg.max_message_bytes),
                peer=self.peer,
                received_at=arrived,
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
        for verdict in verdicts:
            verdict.entry.received_at = arrived
        item = _Pending(verdicts, batch_head)
        self.pending.append(item)
        submit = self.source.journal.submit_to
        for i, verdict in enumerate(verdicts):
            submit(verdict.entry, self.loop, partial(self._journaled, item, i))
        self._flow()

    def _journaled(self, item: _Pending, index: int, outcome: Outcome) -> None:
        item.outcomes[index] = outcome
        item.left -= 1
        if item.left == 0 and item is self.pending[0]:
            self._answer()

    def _answer(self) -> None:
        """Send the ACKs of every frame at the head whose messages are all journaled."""
        out: list[bytes] = []
        pending = self.pending
        while pending and pending[0].left == 0:
            text = self._acks(pending.popleft())
            if text is not None:
                out.append(text)
        transport = self.transport
        if out and transport is not None and not transport.is_closing():
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        self._flow()
        if self.closing and not pending:
            self._shutdown()

    def _flow(self) -> None:
        """Read from the peer only while it takes its answers and the journal keeps up."""
        transport = self.transport
        if transport is None or transport.is_closing() or self.closing:
            return
        waiting = len(self.pending)
        backlog = waiting > _RESUME_AT if self.paused else waiting >= _PAUSE_AT
        if (self.write_blocked or backlog) != self.paused:
            self.paused = not self.paused
            if self.paused:
                transport.pause_reading()
            else:
                transport.resume_reading()

    def _acks(self, item: _Pending) -> bytes | None:
        """The framed answer to one frame, counting what the journal did."""
        counters = self.source.counters
        acks: list[str] = []
        for verdict, outcome in zip(item.verdicts, item.outcomes, strict=True):
            if isinstance(outcome, Written):
                if verdict.entry.status == REJECTED:
                    counters.rejected += 1
                    self._log_rejected(verdict, verdict.reason)
                elif outcome.duplicate:
                    counters.duplicates += 1
                else:
                    counters.accepted += 1
                    counters.reused += outcome.reused
                ack = outcome.ack if outcome.duplicate else verdict.ack
                if ack:
                    acks.append(ack)
            elif isinstance(outcome, Refused):  # a value the journal cannot hold: AR, not AE
                counters.rejected += 1
                self._log_rejected(verdict, "unstorable")
                refusal = reject(verdict.entry.raw, self.cfg.policy, outcome.reason, self.peer).ack
                if refusal:
                    acks.append(refusal)
            else:  # the journal's exception (never None: a frame is answered once all are in)
                counters.journal_errors += 1
                log.error("journal_unavailable", channel=self.cfg.name, error=str(outcome))
                acks.append(_journal_error_ack(verdict, self.cfg.policy.ack_mode))
        if not acks:
            return None
        text = wrap_batch(acks, item.batch_head) if item.batch_head else "".join(acks)
        return frame(text.encode(item.verdicts[0].encoding, errors="replace"))

    def _log_rejected(self, verdict: Verdict, reason: str) -> None:
        """One line per rejected message: which, and the error code; never its content."""
        control_id = verdict.entry.control_id or ""
        log.warning(
            "message_rejected",
            channel=self.cfg.name,
            control_id=control_id[:64] if control_id.isascii() else "",
            message_type=verdict.entry.message_type,
            reason=reason,
        )

    # lifecycle -----------------------------------------------------------------------

    def _release(self) -> None:
        if self.admitted:
            self.admitted = False
            self.source.gate.leave(self.address)

    def _watch_frame(self) -> None:
        """Every byte resets the idle timer, so a frame gets a deadline of its own: from its
        first byte (or the first stray byte before it) to its end."""
        decoder = self.decoder
        if not decoder.pending:
            if self.deadline:
                self.deadline.cancel()
                self.deadline = None
            return
        if self.deadline is None or self.deadline_span != decoder.started:
            if self.deadline:
                self.deadline.cancel()
            self.deadline_span = decoder.started
            self.deadline = self.loop.call_later(self.cfg.frame_deadline, self._frame_overdue)

    def _frame_overdue(self) -> None:
        self.deadline = None
        if self.closing:
            return
        self.source.counters.frame_deadline += 1
        log.warning(
            "mllp_frame_deadline",
            channel=self.cfg.name,
            peer=self.peer,
            deadline=self.cfg.frame_deadline,
            size=self.decoder.open_size,
        )
        if self.transport and not self.transport.is_closing():
            self.transport.pause_reading()
        for event in self.decoder.finish():  # what arrived is kept, as for a connection cut off
            self._handle(event)
        self._close_after_pending()

    def _check_idle(self) -> None:
        due = self.last_data + self.cfg.idle_timeout
        if self.loop.time() < due:
            self.idle = self.loop.call_at(due, self._check_idle)
            return
        self.idle = None
        log.info("mllp_idle_timeout", channel=self.cfg.name, peer=self.peer)
        for event in self.decoder.finish():
            self._handle(event)
        self._close_after_pending()

    def _close_after_pending(self) -> None:
        self.closing = True
        if not self.pending:
            self._shutdown()

    def _shutdown(self) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.close()
        if self.drained is not None and not self.drained.done():
            self.drained.set_result(None)

    async def drain_and_close(self) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.pause_reading()
        if not self.pending:
            self.closing = True
            self._shutdown()
            return
        self.drained = self.loop.create_future()
        self.closing = True
        await self.drained


def _journal_error_ack(verdict: Verdict, mode: str) -> str:
    """The journal could not commit: tell the sender to send again (AE / CE)."""
    try:
        msh = read_msh(verdict.entry.raw, verdict.encoding)
    except Exception:
        msh = None
    code = "CE" if mode == "enhanced" and msh and msh.accept_ack else "AE"
    text = "message not stored (journal unavailable); please send it again"
    return build_ack(msh, code, text=text, error_code="207")
