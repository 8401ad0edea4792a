"""A person's stored records, as the record store hands them to the clinical rules.

Rules see canonical record payloads (the JSON the store keeps), never database rows, so
they can be tested with records built in memory and run on any backend.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from transforms.records.base import HOSPITAL_TZ

__all__ = ["History", "StoredRecord", "as_date", "clinical_date", "derived_id"]

# The field that dates each record type clinically, best first; `event_time` is the fallback.
_DATE_FIELDS: dict[str, tuple[str, ...]] = {
    "PregnancyRegistration": ("registration_date",),
    "PrenatalVisit": ("visit_date",),
    "RiskAssessment": ("assessment_date",),
    "LabResult": ("reported_at", "collected_at", "received_at"),
    "ImagingReport": ("reported_at", "exam_time"),
    "DeliveryRecord": ("delivery_time",),
    "NewbornRecord": ("birth_time",),
    "NewbornScreening": ("sample_time", "hearing_date"),
    "PostpartumVisit": ("visit_date",),
    "ChildHealthExam": ("exam_date",),
    "PremaritalExam": ("exam_date",),
}


def as_date(value: Any) -> date | None:
    """A date from a date, an aware datetime (its day in the hospital's zone) or ISO text."""
    if isinstance(value, datetime):
        return value.astimezone(HOSPITAL_TZ).date() if value.tzinfo else value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return as_date(parsed) if len(value) > 10 else parsed.date()
    return None


def clinical_date(record_type: str, payload: dict[str, Any], event_time: Any = None) -> date | None:
    """The day a record speaks of (visit, report, birth), in the hospital's time zone."""
    for name in _DATE_FIELDS.get(record_type, ()):
        found = as_date(payload.get(name))
        if found is not None:
            return found
    source = payload.get("source") or {}
    return as_date(event_time) or as_date(source.get("event_time"))


@dataclass(frozen=True)
class StoredRecord:
    """One record as stored: its canonical payload and the day it speaks of."""

    record_id: str
    record_type: str
    payload: dict[str, Any]
    day: date | None

    @classmethod
    def of(cls, payload: dict[str, Any], event_time: Any = None) -> StoredRecord:
        kind = str(payload["record_type"])
        return cls(str(payload["record_id"]), kind, payload, clinical_date(kind, payload, event_time))


@dataclass(frozen=True)
class History:
    """Everything stored for one person (oldest first), her person row, and her children's."""

    person_key: str
    person: dict[str, Any] = field(default_factory=dict)
    records: tuple[StoredRecord, ...] = ()
    children: tuple[History, ...] = ()

    def of_type(self, *record_types: str) -> list[StoredRecord]:
        return [r for r in self.records if r.record_type in record_types]


def derived_id(kind: str, person_key: str, *parts: str) -> str:
    """A derived record's stable id. The person key is hashed: it may hold an ID card number,
    and record ids reach logs and URLs."""
    digest = hashlib.sha256(person_key.encode("utf-8")).hexdigest()[:16]
    return ":".join((kind, digest, *parts))
