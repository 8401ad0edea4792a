"""Masking of what a log line or an operator's screen may show: patient data in any text,
the password in any URL. Used by the logging pipeline (engine/logging.py) and by every layer
that words an error an operator reads, so it sits in the base."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

__all__ = ["mask_key", "mask_text", "mask_value", "masked_url"]

_PII_KEYS = {"id_card", "idcard", "phone", "mobile", "telephone", "address", "birth_date"}
# Keys with "name" in them that never name a person (structlog's own among them).
_NOT_PERSON_NAMES = {"event", "logger_name", "channel_name", "order_name", "filename"}
# Keys whose value is a record id or person key: `kind:system:identifier`.
_KEY_KEYS = {"record_id", "person_key", "survivor", "merged"}
_ID_CARD = re.compile(r"(?<!\d)(\d{6})\d{8,11}([\dXx])(?!\d)")
# 13900001234, +8613900001234, 139 0000 1234, 139-0000-1234
_MOBILE = re.compile(r"(?<!\d)((?:\+?86[ -]?)?1[3-9]\d)[ -]?\d{4}[ -]?(\d{4})(?!\d)")


# What PostgreSQL and SQLite quote of the row an error was about.
_DB_ROW_ECHO = re.compile(r"Failing row contains \(.*?\)(?=\.?\s|\.?$)|Key \(.*?\)=\(.*?\)", re.S)


def mask_text(text: str) -> str:
    text = _DB_ROW_ECHO.sub("[row values left out]", text)
    text = _ID_CARD.sub(lambda m: f"{m.group(1)}********{m.group(2)}", text)
    return _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(2)}", text)


def mask_key(key: str) -> str:
    """`person:HIS:0010031207` → `person:HIS:******1207`: the kind and system stay readable
    for the on-call, the identifier does not (its last four characters, for a long one)."""
    head, sep, ident = key.rpartition(":")
    keep = ident[-4:] if len(ident) > 8 else ""
    return f"{head}{sep}{'*' * (len(ident) - len(keep))}{keep}"


def mask_value(key: str, value: Any) -> Any:
    lowered = key.lower()
    if value in (None, ""):
        return value
    if lowered in _PII_KEYS:
        return "***"
    if lowered in _KEY_KEYS and isinstance(value, str):
        return mask_text(mask_key(value))
    if isinstance(value, str):
        if "name" in lowered and lowered not in _NOT_PERSON_NAMES:
            return value[:1] + "*" * max(1, len(value) - 1)
        return mask_text(value)
    if isinstance(value, dict):
        return {k: mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_value(key, v) for v in value]
    return value


def masked_url(url: str) -> str:
    """The URL as a person may see it: the password replaced by ***.

    `amqp://mch:secret@rabbit:5672/mch` → `amqp://mch:***@rabbit:5672/mch`; any scheme.
    """
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unreadable URL>"
    if password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{name}:***@{host}"))
