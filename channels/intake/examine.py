"""The hot path's decision for one received message: accept or reject, before the journal.

Shared by every source that takes HL7 v2 in (MLLP, files): the answer to the sender, if
the source sends one, is made by the `answer` it passes (channels/mllp/ingest.py builds
an HL7 ACK; the default answers nothing). Only MSH is read here (from the raw bytes,
before decoding, so MSH-18 can pick the charset); the rest of the message is parsed later
by the transform stage. The whole payload is still decoded once, strictly, so a message
that cannot be read is rejected now, with the byte offset, instead of being accepted and failing later.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

import structlog

from channels.intake.header_limits import unstorable
from channels.intake.message_limits import DEFAULT_LIMITS, MessageLimits, limit_problem
from core.errors import CharsetMismatch, DecodeError, ParseError
from core.journal import RECEIVED, REJECTED, Entry
from transforms.batch import first_msh, split_frame
from transforms.converters import DEFAULT_TZ, parse_hl7_datetime
from transforms.decode import choose_encoding, normalise_codec, read_text
from transforms.hl7v2 import MshHeader, read_msh

log = structlog.get_logger("engine.ingest")  # the name operators filter on

_EMPTY_BATCH = ParseError("the batch holds no message (no MSH segment)", segment="BHS", code="100")
_REQUIRED = ((9, "message type"), (10, "message control id"), (12, "version id"))


@dataclass(frozen=True, slots=True)
class Policy:
    """What a channel decides about incoming messages (`ack_mode` matters to an answering source)."""

    channel: str
    encoding: str = "utf-8"
    ack_mode: str = "original"
    timezone: ZoneInfo = DEFAULT_TZ
    limits: MessageLimits = DEFAULT_LIMITS


@dataclass(slots=True)
class Verdict:
    """One message's journal entry and the ACK text (None: enhanced mode says no ACK)."""

    entry: Entry
    ack: str | None
    encoding: str
    reason: str = ""  # a rejection's HL7 error code (ERR-3) and location, for the log line


Answer = Callable[[Policy, MshHeader | None, ParseError | None], tuple[str | None, str | None]]
"""The (ACK code, ACK text) a source sends back for one message, accepted (error None) or not."""


def no_answer(policy: Policy, msh: MshHeader | None, err: ParseError | None) -> tuple[None, None]:
    """A source that answers nobody (a file): the journal keeps no ACK."""
    return None, None


def error_location(err: ParseError) -> str:
    """`MSH-9` or `MSH`: where in the message a rejection points (ERR-2)."""
    return f"{err.segment}-{err.field}" if err.field else err.segment


def examine(payload: bytes, policy: Policy, peer: str = "", answer: Answer = no_answer) -> list[Verdict]:
    """Entries for one frame: one per message, several for an FHS/BHS batch.

    A frame the splitter refuses (two messages glued, segments outside a message) is one
    rejected entry for the whole frame, answered with the first message's MSH.
    """
    try:
        parts = split_frame(payload)
    except ParseError as exc:
        return [_refused(payload, policy, exc, peer, answer)]
    if not parts:
        return [_refused(payload, policy, _EMPTY_BATCH, peer, answer)]
    return [_examine_one(p, policy, peer, answer) for p in parts]


def reject(
    payload: bytes, policy: Policy, reason: str, peer: str = "", answer: Answer = no_answer
) -> Verdict:
    """A frame refused before it could be read (oversize, truncated): AR, raw kept."""
    return _refused(payload, policy, ParseError(reason, segment="MSH", code="207"), peer, answer)


def _refused(payload: bytes, policy: Policy, err: ParseError, peer: str, answer: Answer) -> Verdict:
    head = first_msh(payload)
    msh = _try_msh(head)
    encoding = _encoding(msh, policy)
    msh = msh and _in_charset(head, msh, encoding)
    return _rejected(payload, policy, msh, err, encoding, peer, answer)


def _examine_one(payload: bytes, policy: Policy, peer: str, answer: Answer) -> Verdict:
    try:
        msh = read_msh(payload)
    except ParseError as exc:
        return _rejected(payload, policy, None, exc, policy.encoding, peer, answer)
    try:
        encoding = _read_charset(payload, msh, policy)
    except DecodeError as exc:
        err = ParseError(str(exc), segment="MSH", field=18 if msh.charset else None, code="102")
        # A declared charset the bytes contradict is no charset to answer in: use the channel's.
        encoding = _codec("", policy.encoding) if isinstance(exc, CharsetMismatch) else _encoding(msh, policy)
        return _rejected(payload, policy, _in_charset(payload, msh, encoding), err, encoding, peer, answer)
    msh = _in_charset(payload, msh, encoding)
    for field, name in _REQUIRED:
        if not _field(msh, field).strip():
            err = ParseError(f"{name} is empty", segment="MSH", field=field, code="101")
            return _rejected(payload, policy, msh, err, encoding, peer, answer)
    too_big = limit_problem(payload, encoding, msh, policy.limits)
    if too_big is not None:
        return _rejected(payload, policy, msh, too_big, encoding, peer, answer)
    event_time = _event_time(msh.timestamp, policy.timezone)
    refused = unstorable(payload, msh, event_time)
    if refused:
        return _rejected(payload, policy, msh, refused, encoding, peer, answer)
    code, ack = answer(policy, msh, None)
    entry = Entry(
        channel=policy.channel,
        raw=payload,
        status=RECEIVED,
        ack=ack or "",
        ack_code=code or "",
        sender=f"{msh.sending_app}^{msh.sending_facility}",
        control_id=msh.control_id.strip(),
        message_type=msh.message_type,
        event_time=event_time,
        encoding=encoding,
        peer=peer,
    )
    return Verdict(entry, ack, encoding)


def _rejected(
    payload: bytes,
    policy: Policy,
    msh: MshHeader | None,
    err: ParseError,
    encoding: str,
    peer: str,
    answer: Answer,
) -> Verdict:
    code, ack = answer(policy, msh, err)
    location = error_location(err)
    text = str(err)
    entry = Entry(
        channel=policy.channel,
        raw=payload,
        status=REJECTED,
        ack=ack or "",
        ack_code=code or "",
        sender=f"{msh.sending_app}^{msh.sending_facility}" if msh else "",
        control_id=(msh.control_id.strip() or None) if msh else None,
        message_type=msh.message_type if msh else "",
        event_time=_event_time(msh.timestamp, policy.timezone) if msh else None,
        encoding=encoding,
        error=text,
        peer=peer,
    )
    return Verdict(entry, ack, encoding, reason=f"{err.code} {location}")


def _read_charset(payload: bytes, msh: MshHeader, policy: Policy) -> str:
    """The codec the whole payload decodes in (see `read_text`); DecodeError when none fits."""
    reading = read_text(payload, msh.charset, policy.encoding)
    if reading.undeclared_utf8:
        log.warning(
            "charset_differs_from_channel",
            channel=policy.channel,
            control_id=msh.control_id if msh.control_id.isascii() else "",
            channel_encoding=policy.encoding,
            read_as=reading.encoding,
        )
    return reading.encoding


def _in_charset(payload: bytes, msh: MshHeader, encoding: str) -> MshHeader:
    """MSH with its fields decoded in the message's charset, so the ACK and journal echo them.

    Read as latin-1, an all-ASCII MSH line (the usual case) is already right. Any other byte
    in it, even in a field not kept here (MSH-8), may start a GBK/GB18030 character whose
    trail byte is `|` or `^`, which moves every field after it; an MSH line that does not
    decode (a frame cut inside it) keeps the latin-1 reading.
    """
    if msh.ascii_line:
        return msh
    try:
        return read_msh(payload, encoding)
    except (UnicodeDecodeError, ParseError):
        return msh


def _encoding(msh: MshHeader | None, policy: Policy) -> str:
    return _codec(msh.charset if msh else "", policy.encoding)


@lru_cache(maxsize=256)
def _codec(msh18: str, channel_encoding: str) -> str:
    """The codec for an MSH-18 value on a channel: a few distinct pairs, looked up once each."""
    return normalise_codec(choose_encoding(msh18, channel_encoding))


def _try_msh(payload: bytes) -> MshHeader | None:
    try:
        return read_msh(payload)
    except ParseError:
        return None


def _field(msh: MshHeader, n: int) -> str:
    return msh.message_type if n == 9 else msh.control_id if n == 10 else msh.version


def _event_time(stamp: str, tz: ZoneInfo) -> datetime | None:
    if not stamp:
        return None
    if len(stamp) == 14 and stamp.isascii() and stamp.isdigit():
        # The common YYYYMMDDHHMMSS without an offset, read as parse_hl7_datetime reads it.
        try:
            return datetime(
                int(stamp[:4]),
                int(stamp[4:6]),
                int(stamp[6:8]),
                int(stamp[8:10]),
                int(stamp[10:12]),
                int(stamp[12:]),
                tzinfo=tz,
            )
        except ValueError:
            return None
    try:
        return parse_hl7_datetime(stamp, tz)
    except ValueError:
        return None
