"""Which messages a frame or a file holds: one message, or the messages of an FHS/BHS batch.

The engine's one splitter (the MLLP source, `mapping test`, the text reader's `split_batch`).
Guarantee 6, never one patient's data in another's record, rests on it, so it refuses rather
than guesses (rules for senders in docs/mllp.md):

- content that does not start with FHS/BHS is one message: a second MSH (or FHS/BHS) in it,
  or anything but whitespace and a BOM before its MSH, rejects the whole frame. Two messages
  glued together would otherwise be read as one, B's results landing in A's record.
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
_BOM: Final = b"\xef\xbb\xbf"
_ENVELOPE: Final = frozenset((b"FHS", b"BHS", b"BTS", b"FTS"))
_LINE_BREAK: Final = re.compile(rb"\r\n|\r|\n")
# A segment name followed by a delimiter (a letter, digit or space would make it data).
_NOT_DELIMITER: Final = rb"(?![A-Za-z0-9\s])"
_LATER_HEADER: Final = re.compile(rb"[\r\n](?:MSH|FHS|BHS)" + _NOT_DELIMITER)
_FIRST_MSH: Final = re.compile(rb"(?:^|[\r\n])MSH" + _NOT_DELIMITER)


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
    return [payload]


def first_msh(payload: bytes) -> bytes:
    """The payload from its first MSH segment on (all of it when there is none)."""
    found = _FIRST_MSH.search(payload)
    if found is None:
        return payload
    return payload[found.start() + (payload[found.start()] in b"\r\n") :]


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
    number, _ = _segment_at(data, msh.start() + 1)
    _, name = _segment_at(data, 0)
    raise ParseError(
        f"segment 1 ({name}) comes before the message's MSH (segment {number}); nothing may "
        "precede MSH, so the whole frame is refused",
        segment=name,
        code="100",
    )


def _split_batch(payload: bytes) -> list[bytes]:
    messages: list[list[bytes]] = []
    current: list[bytes] | None = None
    closed = False
    for number, line in enumerate(_segments(payload), 1):
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


def _body(payload: bytes) -> bytes:
    data = payload.lstrip(_LEADING)
    return data[3:].lstrip(_LEADING) if data.startswith(_BOM) else data


def _segments(payload: bytes) -> list[bytes]:
    return [line for line in _LINE_BREAK.split(_body(payload)) if line.strip()]


def _segment_at(data: bytes, offset: int) -> tuple[int, str]:
    """The number and name of the segment starting at `offset` of the stripped content."""
    before = sum(1 for line in _LINE_BREAK.split(data[:offset]) if line.strip())
    return before + 1, _name(_LINE_BREAK.split(data[offset:], maxsplit=1)[0])


def _name(line: bytes) -> str:
    """A segment's name for a message to the sender: three characters, shown safely."""
    head = line[:3].decode("latin-1")
    return head if head.isascii() and head.isalnum() else repr(line[:3])[1:]
