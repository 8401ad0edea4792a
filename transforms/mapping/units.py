"""Quantities with units: sender spellings made uniform, and conversion where asked.

Spellings are made canonical by transforms/unit_vocabulary.py (`10*9/L` → `10^9/L`,
`umol/L` → `μmol/L`, `mM` → `mmol/L`, never millimetres). A mapping may ask for a target unit
(`to_unit: g/L`); only conversions that are pure factors are made here — analyte-specific
ones (glucose mg/dL → mmol/L) belong in a code table or the sender's settings. The factors
are transforms/unit_vocabulary.py's `FACTORS`, the same table the record fields use.
"""

from __future__ import annotations

from typing import Any

from transforms.converters import number
from transforms.unit_vocabulary import FACTORS, canonical_unit

__all__ = ["convert_quantity"]


def convert_quantity(raw: Any, unit: str, to_unit: str | None = None) -> dict[str, Any]:
    """{"value": number, "unit": unit}; ValueError when the value is not a number or the
    unit cannot be converted to `to_unit`."""
    value = raw if isinstance(raw, int | float) else number(str(raw))
    have = canonical_unit(unit) if unit else ""
    if not to_unit:
        return {"value": value, "unit": have or None}
    want = canonical_unit(to_unit)
    if have in ("", want):
        return {"value": value, "unit": want}
    (kind, factor), (want_kind, want_factor) = FACTORS.get(have, ("", 0.0)), FACTORS.get(want, ("?", 0.0))
    if kind != want_kind:
        raise ValueError(f"cannot convert {have} to {want}")
    return {"value": round(value * factor / want_factor, 6), "unit": want}
