"""A raw HL7 v2 message laid out for the message page: one segment a line, each field with
its standard name (hl7apy's, e.g. PID-5 Patient Name) for the hover title.

For a role that may not see identifiers the segments that describe a person (PID, NK1,
MRG …) keep only their set id and sex; everything else has ID card and mobile numbers
masked (core/masking.py), so an identifier written into an OBX note is hidden too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.masking import mask_key, mask_text, mask_value
from transforms.hl7v2 import split_segments
from transforms.mapping.explain import field_name

PERSON_SEGMENTS = frozenset({"PID", "PD1", "NK1", "MRG", "GT1", "IN1", "IN2", "PV1", "ZPI"})
KEPT = frozenset({("PID", 1), ("PID", 8), ("NK1", 1), ("GT1", 1), ("IN1", 1), ("PV1", 1), ("PV1", 2)})
HIDDEN = "***"


@dataclass(frozen=True, slots=True)
class Field:
    number: int
    title: str  # "PID-5 Patient Name", or "PID-5" when the standard has no name for it
    value: str


@dataclass(frozen=True, slots=True)
class SegmentLine:
    name: str
    separator: str
    fields: list[Field]


def lay_out(text: str, *, masked: bool) -> list[SegmentLine]:
    """Every segment of the message as a line of named fields."""
    lines = split_segments(text)
    separator = (
        lines[0][3] if lines and lines[0].startswith(("MSH", "FHS", "BHS")) and len(lines[0]) > 3 else "|"
    )
    version = _version(lines, separator)
    out = []
    for line in lines:
        name, *values = line.split(separator)
        first = 2 if name in ("MSH", "FHS", "BHS") else 1  # MSH-1 is the separator itself
        fields = []
        for i, value in enumerate(values):
            number = first + i
            label = _name(name, number, version) if name.isalnum() else None
            shown = _masked(name, number, value) if masked else value
            fields.append(Field(number, f"{name}-{number} {label}" if label else f"{name}-{number}", shown))
        out.append(SegmentLine(name, separator, fields))
    return out


def masked_record(payload: Any) -> Any:
    """A record as a role without identifiers reads it: the log masking (names, ID cards,
    phones, addresses) and every identifier value too (HIS ids, handbook numbers …),
    of which the last four characters stay."""
    return _identifiers_hidden("record", mask_value("record", payload))


def _identifiers_hidden(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _identifiers_hidden(str(k), v) for k, v in value.items()}
    if isinstance(value, list):
        return [_identifiers_hidden(key, v) for v in value]
    if isinstance(value, str) and value and key.endswith(("_id", "_no", "_key", "value", "mother")):
        return mask_key(value)
    return value


def _name(segment: str, number: int, version: str) -> str | None:
    return field_name(segment, number, version) or field_name(segment, number, "2.5")


def _masked(segment: str, number: int, value: str) -> str:
    if segment in PERSON_SEGMENTS and value and (segment, number) not in KEPT:
        return HIDDEN
    return mask_text(value)


def _version(lines: list[str], separator: str) -> str:
    """MSH-12's first component, or 2.5 when the message does not say."""
    for line in lines:
        if line.startswith("MSH"):
            parts = line.split(separator)
            if len(parts) > 11:
                return parts[11].split("^")[0] or "2.5"
    return "2.5"
