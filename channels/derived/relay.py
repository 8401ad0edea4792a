"""An outbox row as the journal keeps it.

raw = canonical JSON (UTF-8, keys sorted, no spaces) of {record_type, record_id, event_time,
record}; control id `derived:<outbox id>`; sender the store's name; message type the record
type. The same row read again gives the same bytes, so the journal's dedup key makes a
second journaling of it (a kill before the outbox row was deleted) a duplicate.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from channels.record_store.derive import event_time_of
from core import journal

ENCODING = "utf-8"
CONTROL_PREFIX = "derived:"


def raw_of(record_type: str, record_id: str, event_time: datetime | None, record: Any) -> bytes:
    data = {
        "record_type": record_type,
        "record_id": record_id,
        "event_time": event_time.isoformat() if event_time else None,
        "record": record,
    }
    return json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(ENCODING)


def entry(channel: str, store: str, row: Any) -> journal.Entry:
    """The journal entry of one `derived_outbox` row."""
    record = row.payload if isinstance(row.payload, dict) else json.loads(row.payload)
    event_time = event_time_of(record)
    return journal.Entry(
        channel=channel,
        raw=raw_of(row.record_type, row.record_id, event_time, record),
        status=journal.RECEIVED,
        ack="",
        ack_code="",
        sender=store[: journal.SENDER_CHARS],
        control_id=f"{CONTROL_PREFIX}{row.id}",
        message_type=row.record_type[: journal.MESSAGE_TYPE_CHARS],
        event_time=event_time,
        encoding=ENCODING,
    )
