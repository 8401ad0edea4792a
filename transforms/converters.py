"""Named converters that mapping files apply to HL7 values.

Each takes the decoded text and returns a JSON-ready value, or raises ValueError
with a sentence an interface engineer understands (the mapping interpreter turns
it into a MappingError naming the file, line, path and value).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?\s*([+-]\d{4})?$")

DEFAULT_TZ = ZoneInfo("Asia/Shanghai")


def parse_hl7_datetime(text: str, tz: timezone | ZoneInfo = DEFAULT_TZ) -> datetime:
    """HL7 DTM/TS (YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]) → aware datetime.

    A time without an offset is local to the hospital (Asia/Shanghai unless the
    engine says otherwise).
    """
    m = _DTM.match(text.strip().split("^", 1)[0])
    if not m:
        raise ValueError("not an HL7 date/time (expected YYYYMMDD[HHMM[SS]][+ZZZZ])")
    year, month, day, hour, minute, second, frac, offset = m.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    try:
        naive = datetime(
            int(year),
            int(month or 1),
            int(day or 1),
            int(hour or 0),
            int(minute or 0),
            int(second or 0),
            micro,
        )
    except ValueError as exc:
        raise ValueError(f"impossible date/time ({exc})") from None
    if offset:
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5]))
        return naive.replace(tzinfo=timezone(sign * delta))
    return naive.replace(tzinfo=tz)


_MEMO_SIZE = 4096


def _memo(fn: Callable[[str], str]) -> Callable[[str], str]:
    """Remember the text results of a pure converter by its text argument.

    A message repeats the same times and codes (every OBX-14 of a report, OBR-7/14/22), and
    parsing them again is the larger part of a mapping's cost. Only `str` arguments are
    kept (other types go straight through) and the table is emptied when full; failures are
    never kept, so every bad value raises its own ValueError.
    """
    cache: dict[str, str] = {}

    def convert(text: str) -> str:
        if type(text) is not str:
            return fn(text)
        found = cache.get(text)
        if found is None:
            found = fn(text)
            if len(cache) >= _MEMO_SIZE:
                cache.clear()
            cache[text] = found
        return found

    convert.__name__ = fn.__name__
    convert.__qualname__ = fn.__qualname__
    convert.__doc__ = fn.__doc__
    convert.__wrapped__ = fn  # type: ignore[attr-defined]
    return convert


@_memo
def hl7_datetime(text: str) -> str:
    return parse_hl7_datetime(text).isoformat()


@_memo
def hl7_date(text: str) -> str:
    value = text.strip()[:8]
    if len(value) != 8 or not value.isdigit():
        raise ValueError("not an HL7 date (expected YYYYMMDD)")
    try:
        return date(int(value[:4]), int(value[4:6]), int(value[6:8])).isoformat()
    except ValueError as exc:
        raise ValueError(f"impossible date ({exc})") from None


# GB/T 2261.1: 0 unknown, 1 male, 2 female, 9 not stated.
_SEX = {
    "M": "1", "MALE": "1", "1": "1", "男": "1",
    "F": "2", "FEMALE": "2", "2": "2", "女": "2",
    "U": "0", "UNKNOWN": "0", "0": "0", "未知": "0", "O": "9", "A": "9", "N": "9", "9": "9",
}  # fmt: skip


@_memo
def sex(text: str) -> str:
    """HL7 M/F/U, Male/Female and Chinese 男/女 onto GB/T 2261.1 codes."""
    code = _SEX.get(text.strip().upper())
    if code is None:
        raise ValueError("unknown sex code (expected M/F/U/O, 男/女 or GB/T 2261.1 0/1/2/9)")
    return code


def number(text: str) -> float | int:
    cleaned = text.strip().replace(",", "")
    try:
        value = float(cleaned)
    except ValueError:
        raise ValueError("not a number") from None
    if not math.isfinite(value):
        raise ValueError("not a number (infinite or NaN)")
    return int(value) if value.is_integer() and "." not in cleaned else value


def integer(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError("not a whole number") from None


def text(value: str) -> str:
    return value


CONVERTERS: dict[str, Callable[[str], object]] = {
    "text": text,
    "hl7_datetime": hl7_datetime,
    "hl7_date": hl7_date,
    "sex": sex,
    "number": number,
    "integer": integer,
}


_XPN_PARTS = re.compile(r"[\^&]")
_CJK = re.compile(r"[\u3400-\u9fff\U00020000-\U0003134f]")


@_memo
def chinese_name(value: str) -> str:
    """The Chinese name out of an XPN, whether vendors send `汉字`, `拼音^汉字` or `汉字^拼音`."""
    parts = [p for p in _XPN_PARTS.split(value) if p.strip()]
    for part in parts:
        if _CJK.search(part):
            return part.strip()
    return " ".join(p.strip() for p in parts[:2])


def id_card(value: str) -> str:
    """Trimmed, with a lowercase check character `x` made `X`; wrong numbers are kept and
    flagged by the record model, never dropped here."""
    text = value.strip()
    return text[:-1] + "X" if text.endswith("x") else text


def gestational_age(value: str) -> dict[str, int]:
    """`10+3`, `12周4日`, `16周` → {"weeks": 10, "days": 3}, by the one parser in transforms.derived."""
    from transforms.derived import gestational_age_value

    return gestational_age_value(value)


def coded(value: str) -> dict[str, str]:
    """A CE/CWE written `code^display^system` → {"code", "display", "system"}."""
    parts = value.split("^")
    keys = ("code", "display", "system")
    return {k: p for k, p in zip(keys, parts, strict=False) if p}


CONVERTERS.update(
    {
        "chinese_name": chinese_name,
        "id_card": id_card,
        "gestational_age": gestational_age,
        "coded": coded,
    }
)


def typed_value(raw: str, value_type: str, delimiters: Any) -> Any:
    """One repetition of an OBX-5 (still escaped) as the type OBX-2 names.

    NM → number (text kept when a lab writes `<0.05` in an NM field), CE/CWE/CNE →
    {"code", "display", "system"}, DT → date, TS/DTM → aware datetime, SN → text
    such as `<5.1`, anything else → decoded text.
    """
    if not raw or raw == '""':
        return None
    kind = value_type.strip().upper()
    if delimiters.component not in raw and delimiters.escape not in raw:
        text = raw  # one plain component: nothing to split or decode
    else:
        from transforms.hl7v2 import unescape

        comps = [unescape(c, delimiters) for c in raw.split(delimiters.component)]
        if kind in ("CE", "CWE", "CNE", "CF", "CX", "IS", "ID") and len(comps) > 1:
            return {k: v for k, v in zip(("code", "display", "system"), comps, strict=False) if v}
        text = unescape(raw, delimiters) if kind not in ("SN",) else "".join(comps)
    try:
        if kind == "NM":
            return number(text)
        if kind == "DT":
            return hl7_date(text)
        if kind in ("TS", "DTM"):
            return hl7_datetime(text)
    except ValueError:
        return text
    return text
