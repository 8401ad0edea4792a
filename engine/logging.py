"""Structured JSON logs with patient data masked, always, for every command.

Every logger goes through `mask_pii`: values under keys that name personal data
(name, id_card, phone, address, …) are masked, and any string anywhere in the
event that looks like a 身份证号 (18 or 15 digits) or a mainland mobile number is
masked too, so an error text that quotes a field value cannot leak one. A database
error's echo of a row (`Failing row contains (…)`, `Key (…)=(…)`) is cut out. Record
ids and person keys carry a HIS patient id as their last part
(`person:HIS:0010031207`): logs keep their kind and system and the id's last four
characters only (`person:HIS:******1207`). `mch-engine` calls `configure` once, in
`main()`, before any command runs.
"""

from __future__ import annotations

import logging
import re
import sys
from typing import Any, TextIO, cast

import structlog

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


def mask_pii(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    return {k: mask_value(k, v) for k, v in event.items()}


class _Stderr:
    """Whatever `sys.stderr` is when a line is written (a test may swap it meanwhile)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure(level: str = "info", stream: Any = None) -> None:
    """JSON lines to stderr (or `stream`), masking first in the pipeline's last steps."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_pii,
            structlog.processors.JSONRenderer(ensure_ascii=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(stream or cast(TextIO, _Stderr())),
        cache_logger_on_first_use=True,
    )
