"""`PassThrough`: the mapping of a route that takes canonical records as they are.

A channel that carries records (a `derived` channel) hands the transform stage
{record_type, record_id, event_time, record}; a route from it without `mapping:` passes the
record on unchanged (the transform stage validates it again, as it does every record).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import InputError
from transforms.mapping.compiler import MappedRecord

__all__ = ["PASS_THROUGH", "PassThrough"]


class PassThrough:
    """The Mapping interface (`apply`, `file`, `files`, `records`) for records passed on."""

    file = "(records passed on unchanged)"
    files: tuple[Path, ...] = ()
    records: tuple[Any, ...] = ()
    input = "record"

    def apply(self, source: Any) -> list[MappedRecord]:
        if not isinstance(source, dict) or not isinstance(source.get("record"), dict):
            raise InputError("a route without a mapping takes canonical records only")
        event_time = source.get("event_time")
        return [
            MappedRecord(
                record_type=str(source["record_type"]),
                record_id=str(source["record_id"]),
                event_time=str(event_time) if event_time else None,
                record=source["record"],
            )
        ]


PASS_THROUGH = PassThrough()
