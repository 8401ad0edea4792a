"""Quantities with units: sender spellings made uniform, and conversion where asked.

Spellings are made canonical by transforms/unit_vocabulary.py (`10*9/L` → `10^9/L`,
`umol/L` → `μmol/L`, `mM` → `mmol/L`, never millimetres). A mapping may ask for a target unit
(`to_unit: g/L`); only conversions that are pure factors are made here — analyte-specific
ones (glucose mg/dL → mmol/L) belong in a code table or the sender's settings.
"""

from __future__ import annotations

from typing import Any

from transforms.converters import number
from transforms.unit_vocabulary import canonical_unit

__all__ = ["convert_quantity"]

_FACTORS: dict[tuple[str, str], float] = {
    ("g/dL", "g/L"): 10.0,
    ("g/L", "g/dL"): 0.1,
    ("mg/dL", "mg/L"): 10.0,
    ("kg", "g"): 1000.0,
    ("g", "kg"): 0.001,
    ("cm", "mm"): 10.0,
    ("mm", "cm"): 0.1,
    ("m", "cm"): 100.0,
    ("cm", "m"): 0.01,
    ("mL", "L"): 0.001,
    ("L", "mL"): 1000.0,
    ("kPa", "mmHg"): 7.50062,
    # hCG, TSH: per millilitre is a thousand times per litre; μIU/mL is mIU/L.
    ("mIU/mL", "mIU/L"): 1000.0,
    ("mIU/L", "mIU/mL"): 0.001,
    ("μIU/mL", "mIU/L"): 1.0,
    ("mIU/L", "μIU/mL"): 1.0,
    ("IU/L", "mIU/mL"): 1.0,
    ("mIU/mL", "IU/L"): 1.0,
}


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
    factor = _FACTORS.get((have, want))
    if factor is None:
        raise ValueError(f"cannot convert {have} to {want}")
    return {"value": round(value * factor, 6), "unit": want}
