"""A polled row as the journal keeps it, and cursor values as the engine's database keeps them.

A row becomes one journal entry whose raw bytes are a canonical encoding of the row: JSON,
UTF-8, keys sorted, no spaces; times ISO 8601 (a time without an offset gets the engine's
time zone, as HL7 times do), decimals as text (never a float), bytes as base64. The same row
read twice gives the same bytes, so the journal recognises a re-read as a duplicate and a
changed row as a new message. The transform stage reads the bytes back as a JSON object.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta, tzinfo
from decimal import Decimal
from typing import Any

from core import journal

MESSAGE_TYPE = "ROW"
"""Message type of every polled row, as engine/pipeline.py routes it (`message_type: ROW`)."""
ENCODING = "utf-8"


def plain(value: Any, tz: tzinfo) -> Any:
    """A column value as JSON can hold it, the same for the same value on every driver."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value) if value != value or value in (float("inf"), float("-inf")) else value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=tz)).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, timedelta):
        return value.total_seconds()
    return str(value)


def encode_row(row: Mapping[str, Any], tz: tzinfo) -> bytes:
    """The canonical bytes of a row (see the module docstring)."""
    data = {str(name): plain(value, tz) for name, value in row.items()}
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(ENCODING)


def column(row: Mapping[str, Any], name: str) -> Any:
    """A column by name as routes.yaml spells it; drivers differ in the case they return."""
    if name in row:
        return row[name]
    lowered = name.lower()
    for key, value in row.items():
        if str(key).lower() == lowered:
            return value
    raise KeyError(name)


def control_id(key: Any, watermark: Any, tz: tzinfo) -> str:
    """`<key>@<watermark>`: a row changed later (a newer watermark) is another message."""
    text = f"{plain(key, tz)}@{plain(watermark, tz)}"
    if len(text) <= journal.CONTROL_ID_CHARS:
        return text
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def entry(
    channel: str, sender: str, row: Mapping[str, Any], key: str, watermark: str, tz: tzinfo
) -> journal.Entry:
    """The journal entry of one polled row; its event time is the watermark when it is a time."""
    wm, k = column(row, watermark), column(row, key)
    event_time = None
    if isinstance(wm, datetime):
        event_time = wm if wm.tzinfo else wm.replace(tzinfo=tz)
    return journal.Entry(
        channel=channel,
        raw=encode_row(row, tz),
        status=journal.RECEIVED,
        ack="",
        ack_code="",
        sender=sender[: journal.SENDER_CHARS],
        control_id=control_id(k, wm, tz),
        message_type=MESSAGE_TYPE,
        event_time=event_time,
        encoding=ENCODING,
    )


# ----------------------------------------------------------------- cursor values


def dump_value(value: Any) -> str:
    """A watermark or key value as text that `load_value` turns back into the same type,
    so the next query binds it as the database gave it."""
    if isinstance(value, datetime):
        kind, text = "datetime", value.isoformat()
    elif isinstance(value, date):
        kind, text = "date", value.isoformat()
    elif isinstance(value, bool):
        kind, text = "int", str(int(value))
    elif isinstance(value, int):
        kind, text = "int", str(value)
    elif isinstance(value, Decimal):
        kind, text = "decimal", format(value, "f")
    elif isinstance(value, float):
        kind, text = "float", repr(value)
    elif isinstance(value, bytes | bytearray | memoryview):
        kind, text = "bytes", bytes(value).hex()
    else:
        kind, text = "str", str(value)
    return json.dumps([kind, text], ensure_ascii=False)


_LOADERS: dict[str, Any] = {
    "datetime": datetime.fromisoformat,
    "date": date.fromisoformat,
    "int": int,
    "decimal": Decimal,
    "float": float,
    "bytes": bytes.fromhex,
    "str": str,
}


def load_value(text: str) -> Any:
    kind, value = json.loads(text)
    return _LOADERS[kind](value)
