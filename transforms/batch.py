"""Which messages a frame or a file holds: one message, or the messages of an FHS/BHS batch.

The engine's one splitter (the MLLP source, `mapping test`, the text reader's `split_batch`).
Guarantee 6, never one patient's data in another's record, rests on it, so it refuses rather
than guesses (rules for senders in docs/mllp.md):

- a segment starts after CR or LF, optionally followed by noise: a UTF-8 BOM, spaces, tabs,
  form feeds. Noise is ignored wherever a segment starts, so ` MSH|` is an MSH segment.
- content that does not start with FHS/BHS is one message: a second MSH (or FHS/BHS) in it,
  or anything but whitespace and a BOM before its MSH, rejects the whole frame. Two messages
  glued together would otherwise be read as one, B's results landing in A's record.
- `MSH` + the frame's own field separator and encoding characters (`MSH|^~\\&|`) inside a
  segment is a message whose predecessor lost its final CR: it rejects the whole frame (or batch).
- in a batch every segment belongs to the MSH before it: a segment before the first MSH or
  right after an envelope segment, an FHS that is not first, or anything after FTS rejects
  the whole batch. An empty batch (`BHS`, `BTS|0`) holds no message: the caller decides.

A `ParseError` names the segment by its number in the frame (1-based, blank lines not counted).
Works on bytes before decoding: CR and LF never occur inside a GB18030 or UTF-8 character.
"""

from __future__ import annotations

import re
from typing import Final

from core.errors import ParseError

_LEADING: Final = b" \t\r\n\x0b\x0c"
_BLANK: Final = b" \t\x0b\x0c"  # noise within a line, before a segment's name
_BOM: Final = b"\xef\xbb\xbf"
_ENVELOPE: Final = frozenset((b"FHS", b"BHS", b"BTS", b"FTS"))
_LINE_BREAK: Final = re.compile(rb"\r\n|\r|\n")
# What may precede a segment's name on its line. The alternatives start with different bytes and
# exclude CR/LF, so a search backtracks over each byte of noise at most once: linear time.
_NOISE: Final = rb"(?:\xef\xbb\xbf|[ \t\x0b\x0c])*"
# A segment name followed by a delimiter (a letter, digit or space would make it data).
_NOT_DELIMITER: Final = rb"(?![A-Za-z0-9\s])"
_LATER_HEADER: Final = re.compile(rb"[\r\n]" + _NOISE + rb"(MSH|FHS|BHS)" + _NOT_DELIMITER)
_FIRST_MSH: Final = re.compile(rb"(?:^|[\r\n])" + _NOISE + rb"(MSH)" + _NOT_DELIMITER)


def is_batch(payload: bytes) -> bool:
    """The content starts with an FHS or BHS envelope segment."""
    return _body(payload)[:3] in (b"FHS", b"BHS")


def split_frame(payload: bytes) -> list[bytes]:
    """The messages of a frame: `[payload]` itself for one message, CR-ended texts for a batch
    (none for an empty batch).

    Raises ParseError (code 100, segment sequence error) when the frame must be refused whole.
    """
    if is_batch(payload):
        return _split_batch(payload)
    _check_single(payload)
    _check_inner_msh(_body(payload), 0)
    return [payload]


def first_msh(payload: bytes) -> bytes:
    """The payload from its first MSH segment on (all of it when there is none)."""
    found = _FIRST_MSH.search(payload)
    return payload if found is None else payload[found.start(1) :]


def _check_single(payload: bytes) -> None:
    data = _body(payload)
    if data.startswith(b"MSH"):
        later = _LATER_HEADER.search(data)
        if later is not None:
            number, name = _segment_at(data, later.start() + 1)
            raise ParseError(
                f"segment {number} is a second {name} outside an FHS/BHS batch; a frame holds one "
                "message, so the whole frame is refused: send each message in its own frame",
                segment=name,
                code="100",
            )
        return
    msh = _FIRST_MSH.search(data)
    if msh is None:
        return  # no MSH at all: reading MSH says what the frame starts with
    number, _ = _segment_at(data, _line_start(data, msh.start(1)))
    _, name = _segment_at(data, 0)
    raise ParseError(
        f"segment 1 ({name}) comes before the message's MSH (segment {number}); nothing may "
        "precede MSH, so the whole frame is refused",
        segment=name,
        code="100",
    )


def _check_inner_msh(data: bytes, start: int) -> None:
    """Refuse `MSH` + this frame's field separator and encoding characters inside a segment:
    the message before it lost its final CR, and its last field would swallow the next message.

    `data` is the stripped content; its first MSH (a segment start) is at `start`.
    """
    header = data[start : start + 16]
    if header[:3] != b"MSH":
        return  # no MSH first: reading MSH says what the frame starts with
    separator = header[3:4]
    end = header.find(separator, 4)
    if not separator or end <= 4:
        return  # no usable MSH-1/MSH-2: reading MSH refuses the message and says why
    marker = header[: end + 1]  # e.g. MSH|^~\&|
    inner = data.find(marker, start + 1)
    if inner == -1:
        return
    number, name = _segment_at(data, _line_start(data, inner))
    raise ParseError(
        f"segment {number} ({name}) holds a second MSH inside it (MSH and this frame's delimiters): "
        "a message glued on without a CR before it; the whole frame is refused: end every segment "
        "with CR and send each message in its own frame",
        segment=name,
        code="100",
    )


def _split_batch(payload: bytes) -> list[bytes]:
    messages: list[list[bytes]] = []
    current: list[bytes] | None = None
    closed = False
    lines = _segments(payload)
    marker = _inner_marker(lines)
    for number, line in enumerate(lines, 1):
        if marker and line.find(marker, 1) != -1:
            why = "holds a second MSH inside it (a message glued on without a CR before it)"
            raise _refused(number, line, why)
        name = line[:3]
        header = len(line) == 3 or not (line[3:4].isalnum() or line[3:4].isspace())
        if closed:
            raise _refused(number, line, "comes after FTS, which ends the file")
        if name == b"MSH" and header:
            current = [line]
            messages.append(current)
        elif name in _ENVELOPE and header:
            if name == b"FHS" and number > 1:
                raise _refused(number, line, "is an FHS that is not the first segment")
            closed = name == b"FTS"
            current = None
        elif current is None:
            raise _refused(number, line, "is not inside a message (no MSH before it in its batch)")
        else:
            current.append(line)
    return [b"\r".join(lines) + b"\r" for lines in messages]


def _refused(number: int, line: bytes, why: str) -> ParseError:
    name = _name(line)
    return ParseError(
        f"segment {number} ({name}) {why}; the whole batch is refused, no message of it was accepted",
        segment=name,
        code="100",
    )


def _inner_marker(lines: list[bytes]) -> bytes:
    """`MSH` + field separator + encoding characters + field separator of the batch's first MSH."""
    for line in lines:
        if line[:3] == b"MSH":
            end = line.find(line[3:4], 4)
            return line[: end + 1] if line[3:4] and end > 4 else b""
    return b""


def _body(payload: bytes) -> bytes:
    data = payload.lstrip(_LEADING)
    return data[3:].lstrip(_LEADING) if data.startswith(_BOM) else data


def _clean(line: bytes) -> bytes:
    """A line without the noise (BOMs, blanks) before its segment's name."""
    while True:
        line = line.lstrip(_BLANK)
        if not line.startswith(_BOM):
            return line
        line = line[3:]


def _segments(payload: bytes) -> list[bytes]:
    return [line for line in map(_clean, _LINE_BREAK.split(_body(payload))) if line.strip()]


def _line_start(data: bytes, offset: int) -> int:
    """Where the line holding `offset` starts."""
    return max(data.rfind(b"\r", 0, offset), data.rfind(b"\n", 0, offset)) + 1


def _segment_at(data: bytes, offset: int) -> tuple[int, str]:
    """The number and name of the segment starting at `offset` of the stripped content."""
    before = sum(1 for line in _LINE_BREAK.split(data[:offset]) if _clean(line).strip())
    return before + 1, _name(_LINE_BREAK.split(data[offset:], maxsplit=1)[0])


def _name(line: bytes) -> str:
    """A segment's name for a message to the sender: three characters, shown safely."""
    line = _clean(line)
    head = line[:3].decode("latin-1")
    return head if head.isascii() and head.isalnum() else repr(line[:3])[1:]
