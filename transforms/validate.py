"""The validate stage: a mapping's output becomes a canonical record, or a clear refusal.

Records of a known type are checked against their model (transforms/records):
data-quality findings that must not lose the data (a wrong ID-card check
character, an unknown lab unit) come back as `flags` on the record; anything the
store must not take (a visit date in the future, a birth weight of 70 kg) raises
`RecordValidationError` with one line per problem, and the message is kept as
failed at the transform stage with that text.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from core.errors import RecordValidationError
from transforms.records import RECORD_TYPES, describe_validation_error, validate_record


def canonical(
    record_type: str, record_id: str, record: dict[str, Any], source: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The record as stored: validated, normalised, JSON-ready, empty values left out."""
    if record_type not in RECORD_TYPES:
        return record  # an action such as PersonMerge, checked by its destination
    data = {**record, "record_id": record_id}
    if source:
        data["source"] = source
    try:
        model = validate_record(record_type, data)
    except ValidationError as exc:
        raise RecordValidationError(describe_validation_error(exc, record_type)) from None
    return model.model_dump(mode="json", exclude_none=True)
