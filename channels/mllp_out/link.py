"""Lock-step MLLP connections to one receiver, a bounded pool of them, and ACK reading.

Delivery workers are threads, so these are blocking sockets. A connection sends one frame
and reads frames until the ACK whose MSA-2 is the sent MSH-10 arrives (a late answer to an
earlier, timed-out message is skipped) or `ack_timeout` passes; then the connection is
closed, since whatever the receiver sends next would be read as the next message's answer.

The pool holds at most `size` connections, shared by every partition worker of the
destination; a worker waits for a free one. A connection the receiver closed while it sat
idle is noticed on the next send (nothing comes back) and replaced once, at once; a fresh
connection that fails is the receiver's problem and a transient delivery error.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass

import structlog

from channels.mllp.ack import AckInfo, parse_ack
from channels.mllp.framing import Frame, MllpDecoder, frame
from core.errors import TransientDeliveryError

__all__ = ["LinkPool", "MllpLink", "Tls"]

log = structlog.get_logger("channels.mllp_out")

MAX_ACK_BYTES = 1 << 20  # an ACK is small; a receiver sending more is not answering
SKIPPED_ACKS = 16  # answers to other messages read before giving up on this one


@dataclass(frozen=True, slots=True)
class Tls:
    """How to speak TLS to the receiver: the client context, and the name its certificate
    must carry (None: the endpoint's host)."""

    context: ssl.SSLContext
    server_name: str | None = None


class _Stale(Exception):
    """The connection was closed before any answer came: it may have been idle too long."""


class MllpLink:
    """One open connection to the receiver."""

    def __init__(self, sock: socket.socket, where: str, ack_timeout: float, ack_encoding: str) -> None:
        self.sock = sock
        self.where = where
        self.ack_timeout = ack_timeout
        self.ack_encoding = ack_encoding
        self.decoder = MllpDecoder(MAX_ACK_BYTES)

    @classmethod
    def open(
        cls,
        host: str,
        port: int,
        connect_timeout: float,
        ack_timeout: float,
        ack_encoding: str,
        tls: Tls | None = None,
    ) -> MllpLink:
        """Connect (and, with `tls`, finish the handshake) within `connect_timeout`."""
        where = f"{host}:{port}"
        try:
            sock = socket.create_connection((host, port), timeout=connect_timeout)
        except OSError as exc:
            raise TransientDeliveryError(f"cannot connect to {where}: {_words(exc)}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            try:
                sock = tls.context.wrap_socket(sock, server_hostname=tls.server_name or host)
            except (OSError, ValueError) as exc:  # ssl.SSLError, a verify failure, a timeout
                with contextlib.suppress(OSError):
                    sock.close()
                why = _tls_words(exc)
                log.warning("mllp_out_tls_failed", receiver=where, reason=why)
                raise TransientDeliveryError(f"TLS handshake with {where} failed: {why}") from None
        return cls(sock, where, ack_timeout, ack_encoding)

    def exchange(self, payload: bytes, control_id: str) -> AckInfo:
        """Send one message, return the receiver's ACK to it."""
        got_bytes = False
        try:
            self.sock.settimeout(self.ack_timeout)
            self.sock.sendall(frame(payload))
            deadline = time.monotonic() + self.ack_timeout
            skipped = 0
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.sock.settimeout(remaining)
                data = self.sock.recv(65536)
                if not data:
                    if not got_bytes:
                        raise _Stale
                    raise TransientDeliveryError(
                        f"{self.where} closed the connection in the middle of its ACK"
                    )
                got_bytes = True
                for event in self.decoder.feed(data):
                    if not isinstance(event, Frame):
                        continue
                    ack = parse_ack(event.payload.decode(self.ack_encoding, errors="replace"))
                    if not control_id or ack.control_id == control_id:
                        return ack
                    skipped += 1
                    log.info("mllp_out_ack_skipped", receiver=self.where, skipped=skipped)
                    if skipped >= SKIPPED_ACKS:
                        raise TransientDeliveryError(
                            f"{self.where} answered {skipped} other messages, not this one"
                        )
        except TimeoutError:
            raise TransientDeliveryError(f"no ACK from {self.where} within {self.ack_timeout:g}s") from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            if not got_bytes:
                raise _Stale from exc
            raise TransientDeliveryError(f"{self.where}: {_words(exc)}") from None
        except OSError as exc:
            raise TransientDeliveryError(f"{self.where}: {_words(exc)}") from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


class LinkPool:
    """At most `size` connections to one receiver, opened when first needed."""

    def __init__(
        self,
        host: str,
        port: int,
        size: int,
        *,
        connect_timeout: float,
        ack_timeout: float,
        ack_encoding: str = "utf-8",
        tls: Tls | None = None,
    ) -> None:
        self.host = host
        self.tls = tls
        self.port = port
        self.size = size
        self.connect_timeout = connect_timeout
        self.ack_timeout = ack_timeout
        self.ack_encoding = ack_encoding
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[MllpLink] = []
        self._lock = threading.Lock()
        self.opened = 0  # connections opened so far, for tests and the monitors

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def exchange(self, payload: bytes, control_id: str) -> AckInfo:
        """Send on a free connection (waiting for one), return the ACK. A connection that
        fails in any way is closed, never given to the next message."""
        wait = self.connect_timeout + self.ack_timeout
        if not self._slots.acquire(timeout=wait):
            raise TransientDeliveryError(
                f"all {self.size} connections to {self.where} stayed busy for {wait:g}s"
            )
        try:
            with self._lock:
                link = self._idle.pop() if self._idle else None
            if link is not None:
                try:
                    return self._use(link, payload, control_id)
                except _Stale:
                    log.info("mllp_out_reconnect", receiver=self.where)
            try:
                return self._use(self._open(), payload, control_id)
            except _Stale:
                raise TransientDeliveryError(
                    f"{self.where} closed the connection without answering"
                ) from None
        finally:
            self._slots.release()

    def _open(self) -> MllpLink:
        link = MllpLink.open(
            self.host, self.port, self.connect_timeout, self.ack_timeout, self.ack_encoding, self.tls
        )
        self.opened += 1
        return link

    def _use(self, link: MllpLink, payload: bytes, control_id: str) -> AckInfo:
        try:
            ack = link.exchange(payload, control_id)
        except BaseException:
            link.close()
            raise
        with self._lock:
            self._idle.append(link)
        return ack

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for link in idle:
            link.close()


def _words(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _tls_words(exc: Exception) -> str:
    """Why a handshake failed, as OpenSSL says it (`certificate verify failed: ...`)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {exc.verify_message}"
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, OSError):
        return getattr(exc, "reason", None) or _words(exc)
    return str(exc)
