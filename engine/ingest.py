"""The hot path's decision for one frame: accept or reject, and the ACK to send.

Only MSH is read here (from the raw bytes, before decoding, so MSH-18 can pick the
charset); the rest of the message is parsed later by the transform stage. The
whole payload is still decoded once, strictly, so a message that cannot be read
is rejected now, with the byte offset, instead of being accepted and failing later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from engine.ack import ack_code, build_ack
from engine.errors import DecodeError, ParseError
from engine.journal import RECEIVED, REJECTED, Entry
from engine.message_limits import DEFAULT_LIMITS, MessageLimits, limit_problem
from transforms.converters import DEFAULT_TZ, parse_hl7_datetime
from transforms.decode import choose_encoding, decode, normalise_codec
from transforms.hl7v2 import MshHeader, read_msh

_REQUIRED = ((9, "message type"), (10, "message control id"), (12, "version id"))


@dataclass(frozen=True, slots=True)
class Policy:
    """What a channel decides about incoming messages."""

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


def examine(payload: bytes, policy: Policy, peer: str = "") -> list[Verdict]:
    """Entries for one frame: one per message, several for an FHS/BHS batch."""
    if _is_batch(payload):
        parts = split_batch(payload)
        if parts:
            return [_examine_one(p, policy, peer) for p in parts]
    return [_examine_one(payload, policy, peer)]


def reject(payload: bytes, policy: Policy, reason: str, peer: str = "") -> Verdict:
    """A frame refused before it could be read (oversize, truncated): AR, raw kept."""
    msh = _try_msh(payload)
    encoding = _encoding(msh, policy)
    return _rejected(payload, policy, msh, ParseError(reason, segment="MSH", code="207"), encoding, peer)


def _examine_one(payload: bytes, policy: Policy, peer: str) -> Verdict:
    try:
        msh = read_msh(payload)
    except ParseError as exc:
        return _rejected(payload, policy, None, exc, policy.encoding, peer)
    encoding = _encoding(msh, policy)
    try:
        decode(payload, encoding, declared=msh.charset)
    except DecodeError as exc:
        err = ParseError(str(exc), segment="MSH", field=18 if msh.charset else None, code="102")
        return _rejected(payload, policy, msh, err, encoding, peer)
    for field, name in _REQUIRED:
        if not _field(msh, field).strip():
            err = ParseError(f"{name} is empty", segment="MSH", field=field, code="101")
            return _rejected(payload, policy, msh, err, encoding, peer)
    too_big = limit_problem(payload, encoding, msh, policy.limits)
    if too_big is not None:
        return _rejected(payload, policy, msh, too_big, encoding, peer)
    code = ack_code(True, msh, policy.ack_mode)
    ack = build_ack(msh, code) if code else None
    entry = Entry(
        channel=policy.channel,
        raw=payload,
        status=RECEIVED,
        ack=ack or "",
        ack_code=code or "",
        sender=f"{msh.sending_app}^{msh.sending_facility}",
        control_id=msh.control_id.strip(),
        message_type=msh.message_type,
        event_time=_event_time(msh.timestamp, policy.timezone),
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
) -> Verdict:
    code = ack_code(False, msh, policy.ack_mode)
    location = f"{err.segment}-{err.field}" if err.field else err.segment
    text = str(err)
    ack = build_ack(msh, code, text=text, error_code=err.code, error_location=location) if code else None
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
    return Verdict(entry, ack, encoding)


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


def _is_batch(payload: bytes) -> bool:
    head = payload.lstrip(b"\xef\xbb\xbf \t\r\n")[:3]
    return head in (b"FHS", b"BHS")


def split_batch(payload: bytes) -> list[bytes]:
    """The messages of an HL7 batch (FHS/BHS … BTS/FTS), each from its MSH on."""
    messages: list[list[bytes]] = []
    for seg in payload.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r"):
        tag = seg[:3]
        if tag == b"MSH":
            messages.append([seg])
        elif tag in (b"FHS", b"BHS", b"BTS", b"FTS") or not seg:
            continue
        elif messages:
            messages[-1].append(seg)
    return [b"\r".join(m) + b"\r" for m in messages]
