"""Bytes to text, once, at the edge: MSH-18 first, then the channel's setting.

HL7 table 0211 names the charsets a sender may declare in MSH-18. Chinese senders
use `UNICODE UTF-8`, `GB 18030-2000`, or leave it empty while sending GBK bytes;
GB18030 is a superset of GBK and GB2312, so a channel set to `gb18030` reads all
three. An undecodable byte is never replaced: the caller gets a `DecodeError`
with the byte offset and rejects the message, keeping the raw bytes.
"""

from __future__ import annotations

import codecs

from engine.errors import DecodeError

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
