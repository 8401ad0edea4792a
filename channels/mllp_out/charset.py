"""Re-encoding a journaled message for a receiver that wants another charset.

The journal keeps the bytes as they came and the codec they were read with. To send them in
another charset the text is decoded with that codec, MSH-18 is set to the HL7 table 0211 name
of the target (a receiver reads MSH-18 first, so it must not keep naming the old charset),
and the text is encoded strictly. A character the target cannot hold is a permanent error
that names the segment and field, never the character: the value is patient data, and the
on-call person finds it in the raw message from the field's name.
"""

from __future__ import annotations

import codecs

from core.errors import PermanentDeliveryError

__all__ = ["MSH18_NAMES", "msh18_name", "reencode"]

MSH18_NAMES: dict[str, str] = {
    "utf-8": "UNICODE UTF-8",
    "gb18030": "GB 18030-2000",
    "ascii": "ASCII",
    "iso8859-1": "8859/1",
    "latin-1": "8859/1",
    "iso8859-2": "8859/2",
    "iso8859-5": "8859/5",
    "iso8859-7": "8859/7",
    "iso8859-9": "8859/9",
    "iso8859-15": "8859/15",
    "big5": "BIG-5",
    "euc_kr": "KS X 1001",
}
"""Python codec (as `codecs.lookup(...).name` spells it) → HL7 table 0211 value for MSH-18."""


def msh18_name(codec: str) -> str:
    """The MSH-18 value for a codec; ValueError naming the codecs we can declare otherwise."""
    name = codecs.lookup(codec).name
    if name in ("gbk", "gb2312"):
        raise ValueError(f"use gb18030 rather than {codec!r}: it is the superset HL7 names (GB 18030-2000)")
    try:
        return MSH18_NAMES[name]
    except KeyError:
        known = ", ".join(sorted({k for k in MSH18_NAMES if k != "latin-1"}))
        raise ValueError(f"no HL7 MSH-18 name for encoding {codec!r} (use one of {known})") from None


def reencode(text: str, codec: str) -> bytes:
    """`text` (one HL7 message, CR-separated segments) with MSH-18 naming `codec`, in `codec`."""
    rewritten = _with_msh18(text, msh18_name(codec))
    try:
        return rewritten.encode(codec)
    except UnicodeEncodeError as exc:
        where = _field_at(rewritten, exc.start)
        raise PermanentDeliveryError(
            f"{where} holds a character {codecs.lookup(codec).name} cannot encode; send this "
            "receiver utf-8 or gb18030, or correct the message at its source"
        ) from None


def _with_msh18(text: str, value: str) -> str:
    """The message with MSH-18 replaced (fields added when the MSH is shorter)."""
    head, sep, rest = text.partition("\r")
    if not head.startswith("MSH") or len(head) < 4:
        raise PermanentDeliveryError("the journaled message does not start with an MSH segment")
    fs = head[3]
    fields = head.split(fs)  # fields[n - 1] is MSH-n: MSH-1 is the separator itself
    while len(fields) < 18:
        fields.append("")
    fields[17] = value
    return fs.join(fields) + sep + rest


def _field_at(text: str, offset: int) -> str:
    """`PID-5` for a character offset in the message."""
    start = text.rfind("\r", 0, offset) + 1
    segment = text[start:offset]
    name = segment[:3]
    fs = text[3]
    number = segment.count(fs) + (1 if name == "MSH" else 0)
    return f"{name}-{number}"
