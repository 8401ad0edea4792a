"""What a source hands the journal and what it gets back: the entry, the outcomes, the
statuses a journal row goes through, and the writer's protocol (engine/journal/ is the
writer; a source only needs this module, so it never imports the engine)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlalchemy import Connection

# What the columns hold. The MLLP source refuses longer control ids and senders up front
# (channels/intake/header_limits.py), so those columns hold the values exactly.
CONTROL_ID_CHARS = 200
SENDER_CHARS = 200
MESSAGE_TYPE_CHARS = 60
EVENT_YEARS = range(1900, 2200)
"""Event times outside these years are refused: SQLite's UTC conversion overflows at the
ends of the calendar, and no MCH message is dated there."""

# Journal statuses.
RECEIVED = "received"
REJECTED = "rejected"
ROUTED = "routed"
UNROUTED = "unrouted"
FAILED = "failed"
DELIVERED = "delivered"
PENDING = "pending"
RETRYING = "retrying"  # waiting in a delayed-retry tier
DEAD = "dead"  # in dead letters; only an operator's replay moves it on


def content_hash(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


@dataclass(slots=True)
class Entry:
    """One received message as the MLLP source hands it to the journal."""

    channel: str
    raw: bytes
    status: str  # RECEIVED or REJECTED
    ack: str
    ack_code: str
    sender: str = ""
    control_id: str | None = None
    message_type: str = ""
    event_time: datetime | None = None
    encoding: str = ""
    error: str | None = None
    peer: str = ""
    received_at: datetime | None = None

    @property
    def dedup_key(self) -> str | None:
        """Equal for the same control id of the same sender with the same bytes."""
        if self.status != RECEIVED or not self.control_id:
            return None
        return f"{self.channel}|{self.sender}|{self.control_id}|{content_hash(self.raw)}"

    @property
    def sent_as(self) -> tuple[str, str, str]:
        """Channel, sender and control id as their columns hold them."""
        return self.channel, self.sender[:SENDER_CHARS], (self.control_id or "")[:CONTROL_ID_CHARS]

    def storable(self, reason: str | None = None) -> Entry:
        """This entry as a `rejected` row any database takes: no NUL characters, text cut
        to its column, no event time outside `EVENT_YEARS`. With `reason`, a received
        entry the journal refused (the raw bytes are kept, the ACK is the source's)."""
        time = self.event_time
        if time is not None and time.year not in EVENT_YEARS:
            time = None
        status, ack, code, error = self.status, self.ack, self.ack_code, self.error
        if reason is not None and status == RECEIVED:
            status, ack, code, error = REJECTED, "", "", reason
        return Entry(
            channel=self.channel,
            raw=self.raw,
            status=status,
            ack=_text(ack),
            ack_code=code,
            sender=_text(self.sender)[:SENDER_CHARS],
            control_id=_text(self.control_id or "")[:CONTROL_ID_CHARS] or None,
            message_type=_text(self.message_type)[:MESSAGE_TYPE_CHARS],
            event_time=time,
            encoding=self.encoding,
            error=error and _text(error),
            peer=self.peer,
            received_at=self.received_at,
        )


def _text(value: str) -> str:
    """Text without NUL characters, which PostgreSQL's text columns cannot hold."""
    return value.replace("\x00", "")


@dataclass(frozen=True, slots=True)
class Written:
    """What the journal did with an entry: its row id, and the ACK to send."""

    journal_id: int
    duplicate: bool
    ack: str
    reused: bool = False  # a new message under a control id this sender used before


@dataclass(frozen=True, slots=True)
class Refused:
    """The database refused a value of this message: it is kept as `rejected` (journal id,
    or None when even that failed), and the sender must be told why (AR), not to resend."""

    journal_id: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Accepted:
    """A newly journaled message the transform stage must process."""

    journal_id: int
    channel: str
    raw: bytes
    encoding: str


Outcome = Written | Refused | Exception
"""What a submitter learns: the row written, the message refused, or why the commit failed."""

Sink = Callable[[Outcome], None]


class Journal(Protocol):
    """The journal writer as a source uses it: hand over an entry, learn its outcome."""

    def submit(self, entry: Entry) -> Future[Written | Refused]: ...

    def submit_to(self, entry: Entry, loop: asyncio.AbstractEventLoop, sink: Sink) -> None: ...

    def commit_with(self, entries: list[Entry], also: Callable[[Connection], None]) -> list[Outcome]:
        """Journal `entries` and run `also(conn)` in the same transaction (a poll cursor)."""
        ...
