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
from zoneinfo import ZoneInfo

_DTM = re.compile(
    r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,4}))?\s*([+-]\d{4})?$"
)

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


def hl7_datetime(text: str) -> str:
    return parse_hl7_datetime(text).isoformat()


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
