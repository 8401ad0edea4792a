"""Reading observations the way the rules need them: by code, as a number, as positive or not.

A rule names a test by any of its codes (the LIS local code, or the standard code the code
table added), so one table serves hospitals whose LIS codes differ.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any

from transforms.rules.history import StoredRecord

__all__ = ["by_code", "codes_of", "number_of", "observations_in", "reads_positive"]

_NEGATIVE = re.compile(
    r"阴性|无反应|未检出|非反应|non[- ]?reactive|negative|^\s*[（(]?\s*-\s*[）)]?\s*$", re.I
)
_POSITIVE = re.compile(r"阳性|弱阳|反应性|有反应|检出|reactive|positive|^\s*[（(]?\s*\+", re.I)


def codes_of(obs: dict[str, Any]) -> set[str]:
    """Every code an observation answers to: local code and standard code, upper-cased."""
    found = {str(obs.get("code") or "").upper()}
    standard = obs.get("standard_code") or {}
    if isinstance(standard, dict) and standard.get("code"):
        found.add(str(standard["code"]).upper())
    found.discard("")
    return found


def observations_in(record: StoredRecord, codes: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The observations of a record whose local or standard code is one of `codes`."""
    wanted = {c.upper() for c in codes}
    for obs in record.payload.get("observations") or ():
        if isinstance(obs, dict) and codes_of(obs) & wanted:
            yield obs


def by_code(record: StoredRecord) -> dict[str, list[dict[str, Any]]]:
    """A record's observations under each code they answer to, for many look-ups in one record."""
    found: dict[str, list[dict[str, Any]]] = {}
    for obs in record.payload.get("observations") or ():
        if isinstance(obs, dict):
            for code in codes_of(obs):
                found.setdefault(code, []).append(obs)
    return found


def number_of(obs: dict[str, Any]) -> float | None:
    """The numeric value, or None for text, coded values and comparators like `<0.05`."""
    value = obs.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or obs.get("comparator"):
        return None
    return float(value)


def _text_of(value: Any) -> str:
    if isinstance(value, dict):
        return " ".join(str(value.get(k) or "") for k in ("code", "display"))
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    return str(value or "")


def reads_positive(obs: dict[str, Any]) -> bool | None:
    """True for a positive or reactive result, False for a negative one, None when unreadable.

    Text is read first (阳性, 弱阳性, reactive; 阴性, 无反应, non-reactive); a number is
    positive at or above a reference range written as an upper bound (`<0.05` IU/mL for
    quantitative HBsAg); the abnormal flag POS/NEG decides what is left."""
    text = _text_of(obs.get("value")).strip()
    if text and not isinstance(obs.get("value"), int | float):
        if _NEGATIVE.search(text):
            return False
        if _POSITIVE.search(text):
            return True
    number = number_of(obs)
    limits = obs.get("reference_range") or {}
    if number is not None and limits.get("high") is not None and limits.get("low") is None:
        return number >= float(limits["high"])
    flag = str(obs.get("abnormal_flag") or "").upper()
    return {"POS": True, "NEG": False}.get(flag)
