"""One vocabulary of unit spellings, shared by mapping conversions and record checks.

Senders write the same unit many ways (`公斤`, `KG`, `10*9/L`, `umol/L`), so spellings are
mostly compared without case. Not all: `mM` is millimolar and `mm` millimetres, `nM` and `nm`,
`uM` and `um` likewise, so those few are read with their case, and a spelling whose case cannot
tell them apart (`MM`) is left as sent: it is then no known unit, which a lab result flags and a
structured length refuses unless the field's own unit settles it. `mIU/mL` and `mIU/L` differ by
1000 and stay distinct.

Which units are expected depends on the report: labs (LIS) send concentrations and counts,
imaging (PACS) sends lengths, areas, volumes, velocities and angles (Graf hip angles in `°`),
and both send multiples of the median (`MoM`, 唐筛 serum and NT screening).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = [
    "FACTORS",
    "IMAGING_UNITS",
    "LAB_UNITS",
    "canonical_unit",
    "convert_value",
    "is_known_imaging_unit",
    "is_known_lab_unit",
]

# lower-cased spelling → canonical spelling (UCUM-style, as printed on Chinese reports)
_SPELLINGS: dict[str, str] = {
    "kg": "kg", "公斤": "kg", "千克": "kg",
    "g": "g", "克": "g", "gm": "g",
    "斤": "斤", "市斤": "斤",  # jin, 500 g: how families and some forms give a child's weight
    "cm": "cm", "厘米": "cm",
    "mm": "mm", "毫米": "mm",
    "m": "m", "米": "m",
    "mmhg": "mmHg", "mm hg": "mmHg", "mm[hg]": "mmHg", "毫米汞柱": "mmHg",
    "/min": "/min", "bpm": "/min", "次/分": "/min", "次/分钟": "/min", "beats/min": "/min",
    "g/l": "g/L", "克/升": "g/L", "g/dl": "g/dL", "克/分升": "g/dL",
    "mg/l": "mg/L", "mg/dl": "mg/dL", "kpa": "kPa", "千帕": "kPa",
    "ml": "mL", "毫升": "mL",
    "l": "L", "升": "L",
    "cel": "Cel", "℃": "Cel", "°c": "Cel", "摄氏度": "Cel",
    "10*9/l": "10^9/L", "10^9/l": "10^9/L", "×10^9/l": "10^9/L", "x10^9/l": "10^9/L",
    "10*12/l": "10^12/L", "10^12/l": "10^12/L",
    "umol/l": "μmol/L", "µmol/l": "μmol/L", "μmol/l": "μmol/L",
    "ug/l": "μg/L", "µg/l": "μg/L", "μg/l": "μg/L",
    "miu/l": "mIU/L", "miu/ml": "mIU/mL",
    "uiu/ml": "μIU/mL", "µiu/ml": "μIU/mL", "μiu/ml": "μIU/mL",
    "mmol/l": "mmol/L", "nmol/l": "nmol/L", "pmol/l": "pmol/L", "iu/l": "IU/L",
    "mom": "MoM", "倍中位数": "MoM",
    "°": "°", "deg": "°",
}  # fmt: skip

# canonical unit → (dimension, factor to the dimension's base unit). A unit listed here is
# converted to any field unit of the same dimension; these are pure factors, whatever is measured.
FACTORS: dict[str, tuple[str, float]] = {
    "g": ("mass", 1.0),
    "kg": ("mass", 1000.0),
    "斤": ("mass", 500.0),
    "mm": ("length", 1.0),
    "cm": ("length", 10.0),
    "m": ("length", 1000.0),
    "mL": ("volume", 1.0),
    "L": ("volume", 1000.0),
    "g/L": ("mass concentration", 1.0),
    "g/dL": ("mass concentration", 10.0),
    "mg/dL": ("mass concentration", 0.01),
    "mg/L": ("mass concentration", 0.001),
    "mmHg": ("pressure", 1.0),
    "kPa": ("pressure", 7.50062),
    # hCG, TSH: per millilitre is a thousand times per litre; μIU/mL is mIU/L.
    "mIU/L": ("international units per volume", 1.0),
    "μIU/mL": ("international units per volume", 1.0),
    "mIU/mL": ("international units per volume", 1000.0),
    "IU/L": ("international units per volume", 1000.0),
    "mmol/L": ("amount concentration", 1.0),
    "μmol/L": ("amount concentration", 0.001),
    "nmol/L": ("amount concentration", 1e-6),
    "pmol/L": ("amount concentration", 1e-9),
}
_MASS, _AMOUNT = "mass concentration", "amount concentration"  # base units g/L and mmol/L
# Spellings read with their case: a concentration that case-folds into a length.
_CASED: dict[str, str] = {
    "mM": "mmol/L", "uM": "μmol/L", "µM": "μmol/L", "μM": "μmol/L", "nM": "nmol/L", "pM": "pmol/L",
}  # fmt: skip
_AMBIGUOUS = frozenset(k.lower() for k in _CASED)


def canonical_unit(unit: str) -> str:
    """A sender's spelling made canonical (`公斤` → kg, `mM` → mmol/L); a spelling that is
    unknown, or whose case leaves it ambiguous (`MM`), is returned as sent."""
    text = unit.strip()
    if text in _CASED:
        return _CASED[text]
    key = text.lower()
    if key in _AMBIGUOUS and _SPELLINGS.get(key) != text:
        return text
    return _SPELLINGS.get(key, text)


def convert_value(value: float, unit: str, to_unit: str, molar_mass: float | None = None) -> float | None:
    """`value` in canonical `unit` expressed in canonical `to_unit`, or None when they cannot be
    reconciled. Units of one kind convert by their factors; a mass concentration and a molar one
    convert only through the analyte's molar mass (g/mol): mmol/L = g/L ÷ M × 1000, so glucose
    (180.16) 99 mg/dL is 5.5 mmol/L."""
    if unit == to_unit:
        return value
    (kind, factor), (to_kind, to_factor) = FACTORS.get(unit, ("", 0.0)), FACTORS.get(to_unit, ("?", 0.0))
    base = value * factor
    if kind != to_kind:
        if not molar_mass or molar_mass <= 0 or {kind, to_kind} != {_MASS, _AMOUNT}:
            return None
        base = base / molar_mass * 1000 if kind == _MASS else base * molar_mass / 1000
    return base / to_factor


# Units labs send, in their usual spellings (compared after `_key`). Anything else is kept and
# flagged `lab_unit_unknown`.
LAB_UNITS: tuple[str, ...] = (
    "g/L", "g/dL", "mg/L", "mg/dL", "μg/L", "μg/dL", "ng/mL", "ng/L", "pg/mL",
    "10^9/L", "10^12/L", "10^6/L", "/μL", "个/μL", "/HP", "/LP", "个/HP",
    "mmol/L", "μmol/L", "nmol/L", "pmol/L", "mEq/L", "mOsm/kg", "mmol/mol",
    "U/L", "IU/L", "U/mL", "IU/mL", "mIU/L", "mIU/mL", "μIU/mL", "kU/L", "AU/mL",
    "S/CO", "COI", "INR", "MoM", "s", "sec", "秒", "mm/h", "%", "‰", "fL", "pg",
    "mL", "L", "mL/min", "mL/min/1.73m2", "mg/24h", "g/24h", "mmol/24h",
    "mm", "cm", "m", "g", "kg", "mmHg", "/min", "bpm", "次/分", "Cel", "℃",
    "周", "天", "月", "岁", "次", "分", "颗", "个", "倍", "滴度",
)  # fmt: skip

# Units imaging reports use for the items they send as observations.
IMAGING_UNITS: tuple[str, ...] = (
    "mm", "cm", "m", "mm2", "cm2", "mL", "cm3", "L", "cm/s", "m/s", "°", "度",
    "g", "kg", "%", "MoM", "/min", "bpm", "次/分", "mmHg", "s", "周", "天", "倍",
)  # fmt: skip


def _key(unit: str) -> str:
    text = canonical_unit(unit)
    if text.lower() in _AMBIGUOUS and text not in _SPELLINGS.values():
        return text  # `MM`: millimetres or millimolar; no unit matches it
    text = text.lower().replace(" ", "").replace("×", "")
    for micro in ("μ", "µ"):
        text = text.replace(micro, "u")
    return text.replace("^", "*")


_LAB_KEYS = frozenset(_key(u) for u in LAB_UNITS)
_IMAGING_KEYS = frozenset(_key(u) for u in IMAGING_UNITS)


@lru_cache(maxsize=1024)
def is_known_lab_unit(unit: str) -> bool:
    """True for the units labs commonly send, in any usual spelling (`10*9/L`, `umol/L`,
    `mM`); kept per spelling, since every observation of a report asks."""
    return _key(unit) in _LAB_KEYS


@lru_cache(maxsize=256)
def is_known_imaging_unit(unit: str) -> bool:
    """True for the units imaging reports use (lengths, volumes, velocities, angles)."""
    return _key(unit) in _IMAGING_KEYS
