"""`mllp_out` destination: forwards the original HL7 message over MLLP (a regional platform,
another engine), the way an MLLP sender destination of a Mirth channel does.

    destinations:
      regional:
        type: mllp_out
        endpoint: ${REGIONAL_MLLP:-10.1.2.3:6661}
        encoding: gb18030        # or `original` (default): the bytes as they were received
        connections: 2           # at most this many open connections to the receiver
        ack_timeout: 30s
        tls: {ca: tls/regional-ca.crt}   # optional: MLLP over TLS (docs/security.md)

What is sent is the journaled message, not the mapped records: a route names `mllp_out` in
its `to:` like any destination, its mapping decides which messages go (one that maps to no
record is not forwarded), and each message is sent once however many records it became
(`channels/mllp_out/forwarded.py`). With `encoding:` set, the text is decoded with the codec
it was received in and sent in the target charset with MSH-18 rewritten.

The receiver's ACK decides: AA/CA delivered; AE/CE, no answer within `ack_timeout`, or no
connection, or a TLS handshake that fails (the receiver's certificate does not verify):
transient (retry tiers); AR/CR: permanent, a dead letter whose reason quotes the
receiver's text. Order: envelopes are partitioned by person as for the record store and each
partition's worker sends one message at a time, so one person's messages leave in the order
they were routed (a message waiting for a retry is overtaken by later ones; see
docs/connectors.md).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator
from sqlalchemy import Engine, select

from channels._receiver_text import quoted
from channels.mllp.ack import AckInfo
from channels.mllp.tls import TlsError
from channels.mllp_out import forwarded
from channels.mllp_out.charset import msh18_name, reencode
from channels.mllp_out.link import LinkPool, Tls
from channels.mllp_out.tls import sender_context, sender_problems
from channels.mllp_out.tls_settings import ClientTlsSettings
from core.connectors import ConnectorContext, DestinationType, register_destination
from core.errors import PermanentDeliveryError, StartupError, TransientDeliveryError
from core.journal.schema import messages as journal_messages
from core.settings import Destination, Listen, PositiveDuration, Settings, parse_listen
from transforms.decode import decode

__all__ = ["MLLP_OUT", "MllpOutDestination", "MllpOutSink"]

ORIGINAL = "original"


class MllpOutDestination(Destination):
    """HL7 v2 over MLLP to another system: the engine connects and sends each routed message
    once, waiting for the receiver's ACK."""

    type: Literal["mllp_out"] = Field(description="Destination type.")
    endpoint: Listen = Field(description="HOST:PORT of the receiver's MLLP listener.")
    encoding: str = Field(
        default=ORIGINAL,
        description="`original` sends the bytes as received; a charset (utf-8, gb18030, ascii, "
        "latin-1, ...) re-encodes the text and rewrites MSH-18 to its HL7 name (UNICODE UTF-8, "
        "GB 18030-2000, ...). A character the charset cannot hold is a dead letter naming the field.",
    )
    connections: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Open connections to the receiver at most, shared by the partitions.",
    )
    connect_timeout: PositiveDuration = Field(
        default=5.0, description="Give up opening a connection after this."
    )
    ack_timeout: PositiveDuration = Field(
        default=30.0, description="Wait this long for the ACK; then the message is retried later."
    )
    partitions: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Queues this destination is split into, by person; each sends one message at a "
        "time, so one person's messages keep their order.",
    )

    tls: ClientTlsSettings | None = Field(
        default=None, description="Send MLLP over TLS, verifying the receiver (docs/security.md)."
    )

    def problems_with(self, settings: Settings) -> list[tuple[str, str]]:
        """The `tls:` files exist inside the configuration folders, load, and the key fits
        the certificate and is closed to group and others."""
        return sender_problems(self.tls, settings)

    @field_validator("encoding")
    @classmethod
    def _known_charset(cls, value: str) -> str:
        value = value.strip().lower()
        if value == ORIGINAL:
            return value
        try:
            msh18_name(value)
        except LookupError:
            raise ValueError(f"unknown text encoding {value!r} (for example utf-8, gb18030)") from None
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        return parse_listen(self.endpoint)

    @property
    def target(self) -> str:
        """Where this destination sends, as the run banner shows it."""
        return f"{'mllps' if self.tls else 'mllp'}://{self.endpoint}"


class MllpOutSink:
    """Sends the journaled messages behind a bundle of envelopes, in order, once each."""

    def __init__(
        self, name: str, settings: MllpOutDestination, journal_engine: Engine, tls: Tls | None = None
    ) -> None:
        host, port = settings.host_port
        self.name = name
        self.settings = settings
        self.journal_engine = journal_engine
        ack_encoding = "utf-8" if settings.encoding == ORIGINAL else settings.encoding
        self.pool = LinkPool(
            host,
            port,
            settings.connections,
            connect_timeout=settings.connect_timeout,
            ack_timeout=settings.ack_timeout,
            ack_encoding=ack_encoding,
            tls=tls,
        )
        # A claim outlives any honest send: waiting for a connection, opening it, the ACK.
        self.lease = 2 * (settings.connect_timeout + settings.ack_timeout) + 10

    def store(self, envelopes: list[dict[str, Any]]) -> None:
        """Forward each envelope's message unless it went already; raise at the first failure
        (the worker then retries the envelopes one by one, and those sent are not sent again)."""
        done: set[int] = set()
        for envelope in envelopes:
            journal_id = int(envelope["journal_id"])
            if journal_id not in done:
                self.forward(journal_id)
                done.add(journal_id)

    def forward(self, journal_id: int) -> None:
        payload, control_id = self._payload(journal_id)
        state = forwarded.claim(self.journal_engine, self.name, journal_id, self.lease)
        if state == forwarded.DONE:
            return
        if state == forwarded.BUSY:
            raise TransientDeliveryError(f"message {journal_id} is being forwarded by another worker")
        try:
            ack = self.pool.exchange(payload, control_id)
            self._judge(ack, control_id)
        except BaseException:
            forwarded.release(self.journal_engine, self.name, journal_id)
            raise
        forwarded.mark_sent(self.journal_engine, self.name, journal_id, ack.code)

    def _payload(self, journal_id: int) -> tuple[bytes, str]:
        """The bytes to send and their MSH-10."""
        query = select(journal_messages.c.raw, journal_messages.c.encoding, journal_messages.c.control_id)
        with self.journal_engine.connect() as conn:
            row = conn.execute(query.where(journal_messages.c.id == journal_id)).first()
        if row is None:
            raise PermanentDeliveryError(f"message {journal_id} is no longer in the journal (purged?)")
        raw, encoding, control_id = bytes(row.raw), row.encoding or "utf-8", row.control_id or ""
        if self.settings.encoding == ORIGINAL:
            return raw, control_id
        return reencode(decode(raw, encoding).rstrip("\r\n") + "\r", self.settings.encoding), control_id

    def _judge(self, ack: AckInfo, control_id: str) -> None:
        code = ack.code.upper()
        if code in ("AA", "CA"):
            return
        said = quoted(ack.text)
        where = self.pool.where
        if code in ("AR", "CR"):
            raise PermanentDeliveryError(f"{where} rejected MSH-10 {control_id!r} with {code}{said}")
        if code in ("AE", "CE"):
            raise TransientDeliveryError(f"{where} answered {code} to MSH-10 {control_id!r}{said}")
        raise TransientDeliveryError(f"{where} answered without a known MSA-1 code ({code or 'none'!r})")

    def close(self) -> None:
        self.pool.close()


def _journal(context: ConnectorContext) -> Engine:
    return context.engine_for(context.settings.engine.database)


def prepare(name: str, destination: MllpOutDestination, context: ConnectorContext) -> None:
    """The table of forwarded messages, in the journal's database."""
    forwarded.ensure_schema(_journal(context))


def build(name: str, destination: MllpOutDestination, context: ConnectorContext) -> MllpOutSink:
    prepare(name, destination, context)
    tls = None
    if destination.tls is not None:
        try:
            ctx = sender_context(destination.tls, context.settings)
        except TlsError as exc:
            raise StartupError(f"destination {name}: {exc}") from None
        tls = Tls(ctx, destination.tls.server_name)
    return MllpOutSink(name, destination, _journal(context), tls)


MLLP_OUT = register_destination(
    DestinationType("mllp_out", MllpOutDestination, build, prepare, parts=(("tls", ClientTlsSettings),))
)
