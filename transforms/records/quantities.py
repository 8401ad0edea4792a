"""Units and plausible ranges for the quantities the records hold.

Two policies, on purpose:
- Structured clinical fields (weight, BP, birth weight, fundal height…) have one canonical
  unit. A vendor spelling of it (`公斤`, `KG`, `次/分`) is accepted and stored canonically;
  a bare number is taken to be in the canonical unit; another unit, or a value outside the
  plausible range, is an error — storing 52.5 g as a mother's weight would mislead a
  clinician.
- Lab observations carry whatever unit the LIS sends; an unknown unit is only flagged
  (`is_known_lab_unit`), because labs send anything and the result is still needed.
  Spellings and the known units are in transforms/unit_vocabulary.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

from transforms.records.base import Quantity, fmt_number, problem
from transforms.unit_vocabulary import FACTORS, LAB_UNITS, canonical_unit, is_known_lab_unit

__all__ = [
    "LAB_UNITS",
    "QuantityRule",
    "canonical_unit",
    "is_known_lab_unit",
]

_DIGITS = 6  # a converted value is rounded so that 11.6 g/dL gives 116 g/L, not 115.99999999999999


@dataclass(frozen=True, slots=True)
class QuantityRule:
    """Annotation for a `Quantity` field: its canonical unit, other accepted units, range.

    `Annotated[Quantity, QuantityRule("birth weight", "g", 300, 7000)]` accepts
    `{"value": 3250, "unit": "g"}`, `3250` or `"3250"`, and rejects `3.25 kg`.
    """

    label: str
    unit: str
    low: float
    high: float
    also: tuple[str, ...] = ()  # further units accepted as sent (imaging: mm and cm)

    @property
    def units(self) -> tuple[str, ...]:
        return (self.unit, *self.also)

    def coerce(self, data: Any) -> Any:
        """Bare numbers and missing units mean the canonical unit."""
        if isinstance(data, int | float | str) and not isinstance(data, bool):
            return {"value": data, "unit": self.unit}
        if isinstance(data, dict) and not data.get("unit"):
            return {**data, "unit": self.unit}
        return data

    def check(self, q: Quantity) -> Quantity:
        """Accept the field's units as sent, convert another unit of the same dimension to the
        canonical one (keeping the original), keep an unknown unit for a flag."""
        unit = canonical_unit(q.unit)
        if unit == q.unit.strip():  # as sent: `MM` is mm where the field is a length
            unit = {u.lower(): u for u in self.units}.get(unit.lower(), unit)
        if unit not in self.units and FACTORS.get(unit, ("",))[0] != FACTORS.get(self.unit, ("?",))[0]:
            kept = Quantity(value=q.value, unit=q.unit)
            if unit in FACTORS or is_known_lab_unit(unit):
                kept._unit_problem = (
                    "quantity_unit_mismatch",
                    f"unit {q.unit!r} is not a unit of {self.label} (expected {' or '.join(self.units)}); "
                    "the value is kept as sent",
                )
            else:
                kept._unit_problem = (
                    "quantity_unit_unknown",
                    f"unit {q.unit!r} of {self.label} is not a known unit (expected {self.unit}); "
                    "the value is kept as sent, check its scale",
                )
            return kept
        value = q.value
        if unit != self.unit:
            value = round(value * FACTORS[unit][1] / FACTORS[self.unit][1], _DIGITS)
        if not self.low <= value <= self.high:
            raise problem(
                "quantity_range",
                f"{fmt_number(q.value)} {unit} is outside the plausible {self.label} "
                f"{fmt_number(self.low)}–{fmt_number(self.high)} {self.unit}",
            )
        if unit in self.units:
            return q if unit == q.unit else Quantity(value=q.value, unit=unit)
        return Quantity(value=value, unit=self.unit, original_value=q.value, original_unit=q.unit)

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        inner = core_schema.no_info_after_validator_function(self.check, handler(source))
        return core_schema.no_info_before_validator_function(self.coerce, inner)

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        js = handler(schema)
        js["x-units"] = list(self.units)
        js["x-range"] = [self.low, self.high]
        return js


# --------------------------------------------------------------------------- field types
# One rule per clinical meaning; ranges are sanity limits (catch unit and typing errors),
# not clinical reference ranges.

AdultWeight = Annotated[Quantity, QuantityRule("body weight", "kg", 25, 250)]
AdultHeight = Annotated[Quantity, QuantityRule("height", "cm", 100, 230)]
SystolicBP = Annotated[Quantity, QuantityRule("systolic blood pressure", "mmHg", 50, 300)]
DiastolicBP = Annotated[Quantity, QuantityRule("diastolic blood pressure", "mmHg", 20, 200)]
Haemoglobin = Annotated[Quantity, QuantityRule("haemoglobin", "g/L", 20, 250)]
BodyTemperature = Annotated[Quantity, QuantityRule("body temperature", "Cel", 30, 45)]
FundalHeight = Annotated[Quantity, QuantityRule("fundal height", "cm", 5, 50)]
MaternalAbdomen = Annotated[Quantity, QuantityRule("abdominal circumference", "cm", 50, 180)]
FetalHeartRate = Annotated[Quantity, QuantityRule("fetal heart rate", "/min", 50, 240)]
BloodLoss = Annotated[Quantity, QuantityRule("blood loss", "mL", 0, 10000, also=("L",))]

BirthWeight = Annotated[Quantity, QuantityRule("birth weight", "g", 300, 7000)]
BirthLength = Annotated[Quantity, QuantityRule("birth length", "cm", 20, 70)]
NewbornHead = Annotated[Quantity, QuantityRule("newborn head circumference", "cm", 18, 50)]
NewbornChest = Annotated[Quantity, QuantityRule("newborn chest circumference", "cm", 15, 50)]

ChildWeight = Annotated[Quantity, QuantityRule("child weight", "kg", 0.5, 60)]
ChildLength = Annotated[Quantity, QuantityRule("child length/height", "cm", 30, 150)]
ChildHead = Annotated[Quantity, QuantityRule("child head circumference", "cm", 25, 60)]

# Ultrasound biometry: reports use mm or cm (NT and CRL in mm, BPD/HC/AC/FL in cm), stored
# as sent; the range is checked in mm.
_LEN = ("cm",)
NuchalTranslucency = Annotated[Quantity, QuantityRule("NT", "mm", 0.1, 15, also=_LEN)]
CrownRumpLength = Annotated[Quantity, QuantityRule("CRL", "mm", 1, 120, also=_LEN)]
BiparietalDiameter = Annotated[Quantity, QuantityRule("BPD", "mm", 5, 120, also=_LEN)]
FetalHead = Annotated[Quantity, QuantityRule("HC", "mm", 20, 450, also=_LEN)]
FetalAbdomen = Annotated[Quantity, QuantityRule("AC", "mm", 20, 500, also=_LEN)]
FemurLength = Annotated[Quantity, QuantityRule("FL", "mm", 2, 90, also=_LEN)]
HumerusLength = Annotated[Quantity, QuantityRule("HL", "mm", 2, 80, also=_LEN)]
FetalWeight = Annotated[Quantity, QuantityRule("EFW", "g", 10, 7000, also=("kg",))]
AmnioticIndex = Annotated[Quantity, QuantityRule("AFI", "cm", 0, 50, also=("mm",))]
AmnioticDepth = Annotated[Quantity, QuantityRule("amniotic fluid depth", "cm", 0, 25, also=("mm",))]
CervicalLength = Annotated[Quantity, QuantityRule("cervical length", "cm", 0, 8, also=("mm",))]
