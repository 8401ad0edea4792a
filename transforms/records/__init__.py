"""Canonical MCH records: the typed, versioned shape every mapping must produce.

`validate_record(record_type, data)` turns a mapping's output dict into a record model or
raises pydantic's ValidationError; `describe_validation_error` renders that error as one
line per problem (`PrenatalVisit.visit_date: 2031-01-01 is in the future`) for the CLI,
the journal and the dashboard. Data-quality findings that must not lose the message (a
wrong ID card check character, an unknown lab unit) are not errors: they arrive as
`record.flags`.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from pydantic import ValidationError

from transforms.records.base import (
    Clinician,
    Coded,
    Encounter,
    Flag,
    PersonRef,
    Quantity,
    Record,
    Referral,
    Source,
)
from transforms.records.birth import DeliveryRecord, NewbornRecord, NewbornScreening
from transforms.records.child import ChildHealthExam
from transforms.records.ga import GestationalAge, parse_gestational_age
from transforms.records.idcard import check_char, validate_id_card
from transforms.records.imaging import ImagingReport
from transforms.records.lab import LabResult, Observation
from transforms.records.person import Person
from transforms.records.pmtct import PmtctCase, PmtctItem
from transforms.records.postpartum import PostpartumVisit
from transforms.records.pregnancy import PregnancyRegistration, PrenatalVisit, RiskAssessment
from transforms.records.premarital import PremaritalExam

__all__ = [
    "RECORD_TYPES",
    "ChildHealthExam",
    "Clinician",
    "Coded",
    "DeliveryRecord",
    "Encounter",
    "Flag",
    "GestationalAge",
    "ImagingReport",
    "LabResult",
    "NewbornRecord",
    "NewbornScreening",
    "Observation",
    "Person",
    "PersonRef",
    "PmtctCase",
    "PmtctItem",
    "PostpartumVisit",
    "PregnancyRegistration",
    "PremaritalExam",
    "PrenatalVisit",
    "Quantity",
    "Record",
    "Referral",
    "RiskAssessment",
    "Source",
    "UnknownRecordType",
    "check_char",
    "describe_validation_error",
    "fixed_audience",
    "parse_gestational_age",
    "validate_id_card",
    "validate_record",
]

RECORD_TYPES: dict[str, type[Record]] = {
    model.__name__: model
    for model in (
        Person,
        PremaritalExam,
        PregnancyRegistration,
        PrenatalVisit,
        RiskAssessment,
        LabResult,
        ImagingReport,
        DeliveryRecord,
        NewbornRecord,
        PostpartumVisit,
        ChildHealthExam,
        NewbornScreening,
        PmtctCase,
    )
}


def fixed_audience(record_type: str) -> str | None:
    """The audience every record of `record_type` carries (a PMTCT case: `pmtct_officer`), or
    None for a type without one or one the engine does not have."""
    model = RECORD_TYPES.get(record_type)
    return model.FIXED_AUDIENCE if model is not None else None


class UnknownRecordType(ValueError):
    """A mapping names a record type the engine does not have."""

    def __init__(self, record_type: str) -> None:
        self.record_type = record_type
        known = ", ".join(RECORD_TYPES)
        super().__init__(f"unknown record type {record_type!r} (known: {known})")


def validate_record(record_type: str, data: dict[str, Any]) -> Record:
    """A mapping's output as a validated record of `record_type`.

    `record_type` may be omitted from `data`; if present it must agree. Raises
    UnknownRecordType for a type that does not exist and pydantic's ValidationError for
    bad data (render it with `describe_validation_error`).
    """
    model = RECORD_TYPES.get(record_type)
    if model is None:
        raise UnknownRecordType(record_type)
    return model.model_validate({"record_type": record_type, **data})


# --------------------------------------------------------------------------- errors

_INTERNAL_LOC = ("function-", "tagged-union", "union[", "nullable[", "json-or-python")


def _location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif any(part.startswith(p) for p in _INTERNAL_LOC) or "[" in part:
            continue
        else:
            out += f".{part}" if out else part
    return out


def _show(value: Any) -> str:
    if isinstance(value, date | datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return "{…}"
    if isinstance(value, list):
        return "[…]"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"


def _message(error: Any) -> str:
    kind = error["type"]
    msg = str(error["msg"])
    value = error.get("input")
    if kind == "missing":
        return "is required but missing"
    if kind == "extra_forbidden":
        return "is not a field of this record (check the target name in the mapping)"
    if kind == "timezone_aware":
        return (
            f"{_show(value)} has no UTC offset; times must carry one (the hl7_datetime converter adds +08:00)"
        )
    if kind == "value_error" and msg.startswith("Value error, "):
        return msg.removeprefix("Value error, ")
    if msg.startswith("Input should be "):
        return f"{_show(value)} is not valid, expected {msg.removeprefix('Input should be ')}"
    if msg.startswith("List should have at least"):
        return f"is empty; {msg[0].lower()}{msg[1:]}"
    return msg


def describe_validation_error(exc: ValidationError, record_type: str) -> str:
    """One line per problem, `Type.field.path: what is wrong with the value`."""
    lines = []
    for error in exc.errors(include_url=False):
        path = _location(tuple(error["loc"]))
        where = f"{record_type}.{path}" if path else record_type
        lines.append(f"{where}: {_message(error)}")
    return "\n".join(lines)
