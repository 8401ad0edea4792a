"""WeChat's typed template keys, checked as WeChat checks them, before anything is sent.

Since May 2023 category templates have typed keys (`thing1`, `time2` …) and WeChat refuses a
value that breaks the key's rule with errcode 47003, the whole notice lost. The engine checks
each value first: a value that would be refused is a `KeyValueRefused` (a permanent delivery
error, so a dead letter naming the key and the rule: fix the notice rule or the mapping), never
a send.
"""

from __future__ import annotations

import re

from core.errors import PermanentDeliveryError

__all__ = ["KEY_TYPES", "KeyValueRefused", "check_key", "key_problem"]

_CHINESE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_ASCII_PRINTABLE = re.compile(r"[\x21-\x7e]+")
_TIME = re.compile(
    r"(?:(?:\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2})\s*)?"
    r"(?:[01]?\d|2[0-3]):[0-5]\d(?::[0-5]\d)?"
    r"(?:\s*[~-]\s*(?:(?:\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{1,2}-\d{1,2})\s*)?(?:[01]?\d|2[0-3]):[0-5]\d)?"
)
_DATE = re.compile(
    r"(?:\d{4}年\d{1,2}月\d{1,2}日|\d{4}-\d{1,2}-\d{1,2}|\d{4}/\d{1,2}/\d{1,2})"
    r"(?:\s*(?:[01]?\d|2[0-3]):[0-5]\d)?"
)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_PHONE = re.compile(r"\+?[\d-]{3,20}")
_AMOUNT = re.compile(r"[¥￥]?-?\d+(?:\.\d{1,2})?元?")

KEY_TYPES: dict[str, str] = {
    "thing": "at most 20 characters (letters, digits, Chinese or symbols)",
    "phrase": "at most 5 Chinese characters, nothing else",
    "character_string": "at most 32 ASCII letters, digits or symbols",
    "name": "at most 10 characters (a Chinese name) or 20 letters",
    "time": "a time: 15:01, or 2024-03-21 15:01, or 2024年3月21日 15:01",
    "date": "a date: 2024-03-21 or 2024年3月21日 (a time after it allowed)",
    "number": "a number of at most 32 characters: digits, one '.', a leading '-'",
    "phone_number": "at most 17 digits, '-' or a leading '+'",
    "amount": "an amount: ¥12.50 or 12.50元, two decimals at most",
}
"""Each key type WeChat knows, with its rule as a dead letter states it."""


class KeyValueRefused(PermanentDeliveryError):
    """A template key's value WeChat would refuse (47003): names the key, its type and the rule."""

    def __init__(self, key: str, kind: str, value: str, rule: str) -> None:
        self.key = key
        self.kind = kind
        self.value = value
        self.rule = rule
        super().__init__(str(self))

    def __str__(self) -> str:
        # The value is not quoted: it may be patient data. Its length is enough to fix the rule.
        return (
            f"WeChat template key {self.key} ({self.kind}) would be refused: {self.rule} "
            f"(the value has {len(self.value)} characters)"
        )


def key_problem(kind: str, value: str) -> str | None:
    """Why WeChat would refuse `value` for a key of type `kind`, or None when it is fine."""
    if kind not in KEY_TYPES:
        return f"unknown key type {kind!r}"
    if not value.strip():
        return "empty value"
    ok = {
        "thing": lambda v: len(v) <= 20,
        "phrase": lambda v: len(v) <= 5 and bool(_CHINESE.fullmatch(v)),
        "character_string": lambda v: len(v) <= 32 and bool(_ASCII_PRINTABLE.fullmatch(v)),
        "name": lambda v: len(v) <= (20 if v.isascii() else 10),
        "time": lambda v: bool(_TIME.fullmatch(v.strip())),
        "date": lambda v: bool(_DATE.fullmatch(v.strip())),
        "number": lambda v: len(v) <= 32 and bool(_NUMBER.fullmatch(v)),
        "phone_number": lambda v: len(v) <= 17 and bool(_PHONE.fullmatch(v)),
        "amount": lambda v: bool(_AMOUNT.fullmatch(v)),
    }[kind](value)
    return None if ok else KEY_TYPES[kind]


def check_key(key: str, kind: str, value: str) -> None:
    """Raise `KeyValueRefused` when WeChat would refuse `value` for this key."""
    rule = key_problem(kind, value)
    if rule is not None:
        raise KeyValueRefused(key, kind, value, rule)
