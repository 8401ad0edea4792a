"""Quantities with units: vendor spellings made uniform, and conversion where asked.

Labs write the same unit several ways (`10*9/L`, `10^9/L`, `10\\S\\9/L` decodes to
`10^9/L`; `umol/L`, `μmol/L`). A mapping may ask for a target unit (`to_unit:
g/L`); only conversions that are pure factors are made here — analyte-specific
ones (glucose mg/dL → mmol/L) belong in a code table or the sender's settings.
"""

from __future__ import annotations

from typing import Any

from transforms.converters import number

_SPELLINGS = {
    "10*9/l": "10^9/L",
    "10^9/l": "10^9/L",
    "×10^9/l": "10^9/L",
    "x10^9/l": "10^9/L",
    "10*12/l": "10^12/L",
    "10^12/l": "10^12/L",
    "umol/l": "μmol/L",
    "µmol/l": "μmol/L",
    "μmol/l": "μmol/L",
    "ug/l": "μg/L",
    "µg/l": "μg/L",
    "μg/l": "μg/L",
    "miu/l": "mIU/L",
    "uiu/ml": "μIU/mL",
    "μiu/ml": "μIU/mL",
    "次/分": "/min",
    "bpm": "/min",
    "mm[hg]": "mmHg",
    "mmhg": "mmHg",
    "克": "g",
    "千克": "kg",
    "公斤": "kg",
    "厘米": "cm",
    "毫米": "mm",
    "米": "m",
    "毫升": "mL",
    "ml": "mL",
    "升": "L",
}

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
}


def normalise_unit(unit: str) -> str:
    text = unit.strip()
    return _SPELLINGS.get(text.lower(), text)


def convert_quantity(raw: Any, unit: str, to_unit: str | None = None) -> dict[str, Any]:
    """{"value": number, "unit": unit}; ValueError when the value is not a number or the
    unit cannot be converted to `to_unit`."""
    value = raw if isinstance(raw, int | float) else number(str(raw))
    have = normalise_unit(unit) if unit else ""
    if not to_unit:
        return {"value": value, "unit": have or None}
    want = normalise_unit(to_unit)
    if have in ("", want):
        return {"value": value, "unit": want}
    factor = _FACTORS.get((have, want))
    if factor is None:
        raise ValueError(f"cannot convert {have} to {want}")
    return {"value": round(value * factor, 6), "unit": want}
