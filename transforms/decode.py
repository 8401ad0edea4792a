"""Bytes to text, once, at the edge: MSH-18 first, then the channel's setting.

HL7 table 0211 names the charsets a sender may declare in MSH-18. Chinese senders
use `UNICODE UTF-8`, `GB 18030-2000`, or leave it empty while sending GBK bytes;
GB18030 is a superset of GBK and GB2312, so a channel set to `gb18030` reads all
three. An undecodable byte is never replaced: the caller gets a `DecodeError`
with the byte offset and rejects the message, keeping the raw bytes.

Senders get the charset wrong in two ways that decode without an error and would
store mojibake, so `read_text` checks for them (rules in docs/mllp.md):

- MSH-18 empty, channel set to another charset, bytes that are valid UTF-8 holding
  Chinese characters: read as UTF-8 (and said so). GB18030 text is almost never
  valid UTF-8 that decodes to CJK ideographs, so this does not misread GBK.
- MSH-18 names a charset the bytes contradict (a single-byte 8859 charset or GB18030
  over UTF-8 text, UTF-16 over single-byte text): refused, naming MSH-18.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from core.errors import CharsetMismatch, DecodeError

# HL7 table 0211 (and common vendor spellings) → Python codec.
_MSH18_CODECS: dict[str, str] = {
    "UNICODE UTF-8": "utf-8",
    "UTF-8": "utf-8",
    "UTF8": "utf-8",
    "UNICODE": "utf-8",
    "GB 18030-2000": "gb18030",
    "GB18030": "gb18030",
    "GB 18030": "gb18030",
    "GBK": "gb18030",
    "GB2312": "gb18030",
    "ASCII": "ascii",
    "8859/1": "latin-1",
    "8859/2": "iso8859-2",
    "8859/5": "iso8859-5",
    "8859/7": "iso8859-7",
    "8859/9": "iso8859-9",
    "8859/15": "iso8859-15",
    "UNICODE UTF-16": "utf-16",
    "BIG-5": "big5",
    "ISO IR87": "iso2022_jp",
    "KS X 1001": "euc_kr",
}


def codec_for_msh18(charset: str) -> str | None:
    """The Python codec a declared MSH-18 value names, or None when we do not know it."""
    return _MSH18_CODECS.get(charset.strip().upper())


def choose_encoding(msh18: str, channel_encoding: str) -> str:
    """MSH-18 wins when it names a known charset; otherwise the channel's setting."""
    declared = codec_for_msh18(msh18) if msh18.strip() else None
    return declared or channel_encoding


def normalise_codec(name: str) -> str:
    """Canonical codec name, so `GBK`, `gbk` and `cp936` journal alike (as gb18030)."""
    canonical = codecs.lookup(name).name
    return "gb18030" if canonical in {"gbk", "gb2312"} else canonical


def decode(raw: bytes, encoding: str, *, declared: str = "") -> str:
    """Decode strictly; on failure say where and, when we can tell, what the bytes really are."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        detail = f"declared {declared!r}" if declared else ""
        guess = _guess(raw, encoding)
        if guess:
            detail = f"{detail}; bytes look like {guess}" if detail else f"bytes look like {guess}"
        raise DecodeError(encoding, exc.start, detail) from exc


def _guess(raw: bytes, failed: str) -> str | None:
    for candidate in ("utf-8", "gb18030"):
        if candidate == codecs.lookup(failed).name:
            continue
        try:
            raw.decode(candidate)
        except UnicodeDecodeError:
            continue
        return candidate.upper()
    return None


@dataclass(frozen=True, slots=True)
class Reading:
    """A message's text and the codec that produced it."""

    text: str
    encoding: str
    undeclared_utf8: bool = False  # UTF-8 found on a channel set to another charset


# CJK ideographs: the unified block, extension A, compatibility, and extensions B onwards.
_HANZI = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")
_WIDE_UNICODE = ("utf-16", "utf-32")


def read_text(raw: bytes, msh18: str, channel_encoding: str) -> Reading:
    """Decode a message whose MSH was readable as single-byte text, refusing mojibake.

    Raises `DecodeError` when the bytes do not decode, `CharsetMismatch` when they
    contradict the declared MSH-18.
    """
    declared = codec_for_msh18(msh18) if msh18.strip() else None
    if declared is None:
        codec = normalise_codec(channel_encoding)
        utf8 = _evidently_utf8(raw, codec)
        if utf8 is not None:
            return Reading(utf8, "utf-8", undeclared_utf8=True)
        return Reading(decode(raw, codec), codec)
    codec = normalise_codec(declared)
    if codec.startswith(_WIDE_UNICODE):
        raise CharsetMismatch(msh18, 0, "the message is single-byte text (its MSH is not UTF-16)")
    if _evidently_utf8(raw, codec) is not None:
        offset = next(i for i, b in enumerate(raw) if b > 0x7F)
        raise CharsetMismatch(
            msh18, offset, f"the bytes are UTF-8 (first multi-byte character at offset {offset})"
        )
    return Reading(decode(raw, codec, declared=msh18), codec)


def _evidently_utf8(raw: bytes, codec: str) -> str | None:
    """The UTF-8 text of bytes that cannot be meant as `codec`, else None.

    Any valid multi-byte UTF-8 rules out a single-byte charset; for a multi-byte one
    (GB18030, Big5, ...) the UTF-8 reading must also hold a CJK ideograph.
    """
    if codec == "utf-8" or raw.isascii():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    single_byte = codec == "ascii" or codec.startswith(("iso8859", "latin", "cp125"))
    return text if single_byte or _HANZI.search(text) else None
