"""Per-channel bounds on a message's shape, checked at ingest before the ACK.

Why: the transform stage is one thread for every channel, so a message with a million
segments or repetitions would stall all of them. A message past a bound is answered AR
naming the bound and where it was passed (ARCHITECTURE.md §1, guarantee 7), and kept as
`rejected`. The check is one pass over the bytes made of C-level `split`, `translate`,
`count` and `len` calls, so its cost stays linear and small even for hostile input.

Delimiters are found in the raw bytes when every byte below 0x80 is a character of its
own (UTF-8, ASCII, the ISO 8859 family). In GB18030, GBK and UTF-16 a byte of a Chinese
character can equal `|` or `~`, so those messages are scanned as UTF-8 bytes of their
text, and a field found too big there is measured again in the message's own charset.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass
from itertools import compress, islice

from core.errors import ParseError
from transforms.hl7v2 import MshHeader

__all__ = ["DEFAULT_LIMITS", "MessageLimits", "limit_problem"]

_HEADERS = ("MSH", "FHS", "BHS")  # field 1 is the separator, field 2 the encoding characters


@dataclass(frozen=True, slots=True)
class MessageLimits:
    """The largest message shape a channel accepts (routes.yaml `limits:`)."""

    max_segments: int = 5000
    max_repetitions: int = 1000
    max_field_bytes: int = 1024 * 1024


DEFAULT_LIMITS = MessageLimits()


def limit_problem(payload: bytes, encoding: str, msh: MshHeader, limits: MessageLimits) -> ParseError | None:
    """The first bound the message passes, as the AR's reason; None when it is within all.
    `payload` must already have decoded with `encoding`."""
    rep = (msh.encoding_chars[1:2] or "~").encode("latin-1")
    if (
        len(payload) <= limits.max_field_bytes
        and payload.count(b"\r") + payload.count(b"\n") < limits.max_segments
        and payload.count(rep) < limits.max_repetitions
    ):
        return None  # the usual message: byte counts bound every count below, in any charset
    name = codecs.lookup(encoding).name
    if name in ("utf-8", "ascii") or name.startswith("iso8859"):
        return _scan(payload, msh, limits, None)
    return _scan(payload.decode(encoding).encode("utf-8"), msh, limits, encoding)


def _scan(data: bytes, msh: MshHeader, limits: MessageLimits, encoding: str | None) -> ParseError | None:
    """The check on bytes in which delimiters are plain ASCII; `encoding` is the message's
    own charset when `data` was transcoded to UTF-8 for the scan."""
    lines = data.replace(b"\r\n", b"\r").replace(b"\n", b"\r").split(b"\r")
    count = len(lines) - lines.count(b"")
    if count > limits.max_segments:
        count -= list(map(bytes.strip, lines)).count(b"") - lines.count(b"")  # nor are blank lines
        if count > limits.max_segments:
            first_over = next(islice(filter(bytes.strip, lines), limits.max_segments, None))
            return ParseError(
                f"segment {limits.max_segments + 1} of {count} passes this channel's "
                f"max_segments ({limits.max_segments})",
                segment=first_over[:3].decode("latin-1"),
                code="207",
            )
    fs = msh.field_sep.encode("latin-1")
    rep = (msh.encoding_chars[1:2] or "~").encode("latin-1")
    for position, line in enumerate(filter(bytes.strip, lines), 1):
        many = line.count(rep) >= limits.max_repetitions
        if many or len(line) - line.count(fs) > limits.max_field_bytes:
            problem = _segment_problem(line, fs, rep, many, limits, encoding, position)
            if problem is not None:
                return problem
    return None


def _segment_problem(
    line: bytes, fs: bytes, rep: bytes, many: bool, limits: MessageLimits, encoding: str | None, position: int
) -> ParseError | None:
    """The bound one long or repetitive segment passes, located to its field."""
    name = line.split(fs, 1)[0].decode("latin-1")
    where = _Where(name, name in _HEADERS, position)
    if many:
        # Only the separators matter here: drop every other byte, then count per field.
        skeleton = line.translate(None, bytes(b for b in range(256) if b not in (fs[0], rep[0])))
        counts = [n + 1 for n in map(len, skeleton.split(fs))]
        if where.header and len(counts) > 1:
            counts[1] = 1  # MSH-2 holds the repetition character itself
        problem = where.over(counts, limits.max_repetitions, "repetitions", "max_repetitions")
        if problem is not None:
            return problem
    fields = line.split(fs)
    sizes = list(map(len, fields))
    if encoding is not None:  # the scan saw UTF-8: measure the big fields in their own charset
        for i in compress(range(len(sizes)), map(limits.max_field_bytes.__lt__, sizes)):
            sizes[i] = len(fields[i].decode("utf-8").encode(encoding))
    return where.over(sizes, limits.max_field_bytes, "bytes", "max_field_bytes")


@dataclass(frozen=True, slots=True)
class _Where:
    """One segment of the message, to name a field of it in the AR."""

    name: str
    header: bool  # MSH, FHS, BHS: field 1 is the separator, so split index i is field i + 1
    position: int

    def over(self, amounts: list[int], limit: int, unit: str, setting: str) -> ParseError | None:
        """A problem for the largest amount among the fields (index 0, the name, excluded)."""
        amounts[0] = 0
        largest = max(amounts)
        if largest <= limit:
            return None
        index = amounts.index(largest)
        return ParseError(
            f"{largest} {unit} (segment {self.position}) pass this channel's {setting} ({limit})",
            segment=self.name,
            field=index + 1 if self.header else index,
            code="207",
        )
