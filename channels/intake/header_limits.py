"""Values a message must not carry into the journal, refused before it is accepted.

A value the journal cannot store would fail its insert, and an AE ("send again") would
make an obedient sender resend it forever. So such a message is answered AR naming the
field, and kept as `rejected` with the value left out (see `Entry.storable`).
"""

from __future__ import annotations

from datetime import datetime

from core.errors import ParseError
from core.journal import CONTROL_ID_CHARS, EVENT_YEARS, SENDER_CHARS
from transforms.hl7v2 import MshHeader


def unstorable(payload: bytes, msh: MshHeader, event_time: datetime | None) -> ParseError | None:
    """Why the journal could not keep this message as received, or None."""
    nul = _nul_in_msh(payload)
    if nul >= 0:
        field = payload.count(msh.field_sep.encode("latin-1"), 0, nul) + 1
        return ParseError("contains a NUL character (0x00)", segment="MSH", field=field, code="102")
    control_id = msh.control_id.strip()
    if len(control_id) > CONTROL_ID_CHARS:
        text = f"message control id longer than {CONTROL_ID_CHARS} characters ({len(control_id)})"
        return ParseError(text, segment="MSH", field=10, code="102")
    if len(msh.sending_app) + 1 + len(msh.sending_facility) > SENDER_CHARS:
        text = f"sending application and facility (MSH-3, MSH-4) longer than {SENDER_CHARS - 1} characters"
        return ParseError(text, segment="MSH", field=3, code="102")
    if event_time is not None and event_time.year not in EVENT_YEARS:
        first, last = EVENT_YEARS[0], EVENT_YEARS[-1]
        text = f"message date/time {msh.timestamp} is outside the years {first} to {last}"
        return ParseError(text, segment="MSH", field=7, code="102")
    return None


def _nul_in_msh(payload: bytes) -> int:
    """Offset of a NUL byte in the MSH segment, or -1. Its fields go into the journal's
    text columns and the ACK, which PostgreSQL refuses with a NUL; the rest of the
    message is kept as bytes and may hold one (the mapping decides what it means)."""
    end = len(payload)
    for terminator in (b"\r", b"\n"):
        at = payload.find(terminator, 0, end)
        if at >= 0:
            end = at
    return payload.find(b"\x00", 0, end)
