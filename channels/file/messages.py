"""Which messages one dropped HL7 file holds, each with its place in the file.

A file is read whole, its segment ends (CR, LF or CRLF) made CR and blank lines dropped, so a
message journaled from a file reads exactly as the same message sent over MLLP. Then:

- a file that starts with FHS or BHS is a batch, split by transforms/batch.py exactly as an
  MLLP batch frame is (a batch that breaks its envelope rules is refused whole);
- otherwise every segment that starts with `MSH` begins a new message: a file of several
  messages one after another, as HIS and LIS exports often write them, is several messages.
  This does not guess where one patient's data ends: each message starts at its own MSH, and
  anything before the first MSH, or a batch envelope segment in such a file, makes the whole
  file refused (guarantee 6 in the design).

A refused file is one piece, `index` 0, holding the whole content; the caller journals it as
rejected with the reason `transforms/batch.py` gives.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Final

from core.errors import ParseError
from transforms.batch import is_batch, split_frame

_LINE_BREAK: Final = re.compile(rb"\r\n|\r|\n")
_BOM: Final = b"\xef\xbb\xbf"
# A segment named MSH: the name followed by its field separator, not by more letters.
_MSH: Final = re.compile(rb"MSH(?![A-Za-z0-9\s])")
_ENVELOPE: Final = re.compile(rb"(?:FHS|BHS|BTS|FTS)(?![A-Za-z0-9\s])")


@dataclass(frozen=True, slots=True)
class Piece:
    """One message of a file (`index` from 1), or the whole refused file (`index` 0)."""

    index: int
    payload: bytes
    refusal: ParseError | None = None


def normalise(content: bytes) -> bytes:
    """Segments ended by CR, blank lines and a leading UTF-8 BOM removed."""
    if content.startswith(_BOM):
        content = content[len(_BOM) :]
    lines = [line for line in _LINE_BREAK.split(content) if line.strip()]
    return b"".join(line + b"\r" for line in lines)


def split_file(content: bytes) -> list[Piece]:
    """The messages of a file in order; one refused piece when the file must be refused whole.

    An empty file, or a batch with no message in it, is refused too: a file nobody can read
    must not vanish into `done/`.
    """
    text = normalise(content)
    if not text:
        return [Piece(0, content, ParseError("the file holds no segment", segment="MSH", code="100"))]
    if is_batch(text):
        try:
            messages = split_frame(text)
        except ParseError as exc:
            return [Piece(0, text, exc)]
        if not messages:
            refusal = ParseError("the batch holds no message (no MSH segment)", segment="BHS", code="100")
            return [Piece(0, text, refusal)]
        return [Piece(i, message) for i, message in enumerate(messages, 1)]
    segments = text.split(b"\r")[:-1]
    starts = [n for n, segment in enumerate(segments) if _MSH.match(segment)]
    if not starts or starts[0] != 0:
        # Nothing but segments, or segments before the first MSH: let the MLLP rules say why.
        try:
            split_frame(text)
        except ParseError as exc:
            return [Piece(0, text, exc)]
        return [Piece(1, text)]  # no MSH at all: reading MSH rejects it with the reason
    envelope = next((n for n, segment in enumerate(segments) if _ENVELOPE.match(segment)), None)
    if envelope is not None:
        name = segments[envelope][:3].decode("ascii")
        why = (
            f"segment {envelope + 1} ({name}) is a batch envelope segment in a file that does not "
            "start with FHS or BHS; the whole file is refused"
        )
        return [Piece(0, text, ParseError(why, segment=name, code="100"))]
    bounds = [*starts, len(segments)]
    return [
        Piece(i, b"".join(s + b"\r" for s in segments[start:end]))
        for i, (start, end) in enumerate(itertools.pairwise(bounds), 1)
    ]
