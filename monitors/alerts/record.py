"""A transition as an `EngineAlert` record in the journal, so routes send it on like any
record: retried, dead-lettered, and deduplicated by the WeChat ledger.

The bytes are the derived channel's record envelope ({record_type, record_id, event_time,
record}); the record id names the episode and the transition, so one transition journaled
twice is a duplicate, and each repeat is a notice of its own. Audience `staff`: never a
patient destination. No patient data: rule, subject (a channel, destination or store name),
severity, times and the summary.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from core import journal
from core.audience import STAFF
from monitors.alerts.evaluate import Transition

__all__ = ["CONTROL_PREFIX", "ENCODING", "RECORD_TYPE", "entry", "record_of"]

RECORD_TYPE = "EngineAlert"
ENCODING = "utf-8"
CONTROL_PREFIX = "alert:"
STATE_TEXT = {"open": "告警", "repeat": "仍未恢复", "resolve": "已恢复"}
"""The state as a WeChat `phrase` key shows it (at most five Chinese characters)."""


def _stamp(when: datetime) -> str:
    return f"{when.astimezone(UTC):%Y%m%dT%H%M%S}"


def record_id(t: Transition) -> str:
    """rule:subject:opened:kind:at — the episode and this transition of it."""
    return f"{t.rule}:{t.subject}:{_stamp(t.opened_at)}:{t.kind}:{_stamp(t.at)}"


def record_of(t: Transition) -> dict[str, Any]:
    return {
        "rule": t.rule,
        "subject": t.subject,
        "severity": t.severity,
        "state": t.state,
        "transition": t.kind,
        "state_text": STATE_TEXT[t.kind],
        "title": t.title,
        "title_en": t.title_en,
        "opened_at": t.opened_at.astimezone(UTC).isoformat(),
        "changed_at": t.at.astimezone(UTC).isoformat(),
        "summary_zh": t.summary,
        "summary_en": t.summary_en,
        "audience": STAFF,
    }


def entry(channel: str, t: Transition) -> journal.Entry:
    rid = record_id(t)
    data = {
        "record_type": RECORD_TYPE,
        "record_id": rid,
        "event_time": t.at.isoformat(),
        "record": record_of(t),
    }
    raw = json.dumps(data, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode(ENCODING)
    return journal.Entry(
        channel=channel,
        raw=raw,
        status=journal.RECEIVED,
        ack="",
        ack_code="",
        sender="engine",
        control_id=f"{CONTROL_PREFIX}{rid}"[: journal.CONTROL_ID_CHARS],
        message_type=RECORD_TYPE,
        event_time=t.at,
        encoding=ENCODING,
    )
