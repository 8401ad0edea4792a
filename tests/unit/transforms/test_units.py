"""Units of MCH reports: one vocabulary for conversions and checks, case where case matters.

`MoM` (唐筛), `°` (Graf hip angles), `mIU/mL` against `mIU/L` (a factor of 1000) and `mM`
(millimolar, never millimetres), and imaging observations checked against imaging units.
"""

from __future__ import annotations

from typing import Any

import pytest

from transforms.mapping.units import convert_quantity
from transforms.records import ImagingReport, LabResult, validate_record
from transforms.unit_vocabulary import canonical_unit, is_known_imaging_unit, is_known_lab_unit

REPORT = {"record_id": "pacs:PACS:FY01:US1", "findings": "双侧髋关节超声"}
LAB = {"record_id": "lab:LIS:FY01:1", "observations": []}


def _obs(code: str, value: Any, unit: str) -> dict[str, Any]:
    return {"value_type": "NM", "code": code, "name": code, "value": value, "unit": unit}


def _flags(record_type: str, data: dict[str, Any], *observations: dict[str, Any]) -> list[tuple[str, str]]:
    record = validate_record(record_type, {**data, "observations": list(observations)})
    return [(f.code, f.field) for f in record.flags]


@pytest.mark.parametrize(
    ("sent", "canonical"),
    [("mM", "mmol/L"), ("uM", "μmol/L"), ("nM", "nmol/L"), ("mm", "mm"), ("毫米", "mm"), ("MoM", "MoM"),
     ("mom", "MoM"), ("mIU/mL", "mIU/mL"), ("MIU/L", "mIU/L"), ("°", "°"), ("MM", "MM"), ("nm", "nm")],
)  # fmt: skip
def test_spellings_keep_the_meaning_their_case_gives(sent: str, canonical: str) -> None:
    """`mM` is millimolar; `MM`, which could be either, stays as sent; mIU/mL and mIU/L stay apart."""
    assert canonical_unit(sent) == canonical


def test_millimolar_is_never_a_length() -> None:
    """5.2 mM converts to mmol/L as it is, and refuses to become millimetres."""
    assert convert_quantity("5.2", "mM", "mmol/L") == {"value": 5.2, "unit": "mmol/L"}
    assert convert_quantity("5.2", "mM") == {"value": 5.2, "unit": "mmol/L"}
    with pytest.raises(ValueError, match="cannot convert mmol/L to mm"):
        convert_quantity("5.2", "mM", "mm")


def test_per_millilitre_and_per_litre_differ_by_a_thousand() -> None:
    """β-hCG 25,000 mIU/mL is 25,000,000 mIU/L; TSH 4.2 μIU/mL is 4.2 mIU/L."""
    assert convert_quantity("25000", "mIU/mL", "mIU/L") == {"value": 25_000_000, "unit": "mIU/L"}
    assert convert_quantity("8500", "mIU/L", "mIU/mL") == {"value": 8.5, "unit": "mIU/mL"}
    assert convert_quantity("4.2", "uIU/mL", "mIU/L") == {"value": 4.2, "unit": "mIU/L"}
    assert convert_quantity("25000", "mIU/mL") == {"value": 25000, "unit": "mIU/mL"}


@pytest.mark.parametrize("unit", ["MoM", "mom", "mM", "mIU/mL", "mIU/L", "μIU/mL"])
def test_mch_lab_units_are_known(unit: str) -> None:
    """唐筛 MoM, millimolar and both hCG scales raise no unknown-unit flag."""
    assert is_known_lab_unit(unit)


def test_an_ambiguous_or_imaging_unit_in_a_lab_report_is_flagged() -> None:
    """`MM` (millimetres or millimolar?) and an angle on a lab result are flagged, not guessed."""
    assert not is_known_lab_unit("MM") and not is_known_lab_unit("°")
    assert _flags("LabResult", LAB, _obs("GLU", 5.2, "MM"), _obs("AFP", 1.12, "MoM")) == [
        ("lab_unit_unknown", "observations[0].unit")
    ]


def test_imaging_observations_are_checked_against_imaging_units() -> None:
    """Graf hip angles in `°`/`度`, NT MoM, lengths and velocities raise no flag on an
    ImagingReport; a lab unit there does, under its own code."""
    assert all(is_known_imaging_unit(u) for u in ("°", "度", "MoM", "mm", "cm/s", "mL"))
    flags = _flags(
        "ImagingReport",
        REPORT,
        _obs("HIP_L_ALPHA", 62, "°"),
        _obs("HIP_R_BETA", 48, "度"),
        _obs("NT_MOM", 0.9, "MoM"),
        _obs("UA_PSV", 45.2, "cm/s"),
        _obs("GLU", 5.2, "mmol/L"),
    )
    assert flags == [("imaging_unit_unknown", "observations[4].unit")]


def test_a_structured_length_refuses_millimolar_but_reads_capital_mm() -> None:
    """NT in `mM` is flagged as a unit mismatch; NT in `MM` is read as millimetres (NT is a length)."""
    nt: dict[str, Any] = {**REPORT, "measurements": {"nt": {"value": 1.4, "unit": "mM"}}}
    flagged = validate_record("ImagingReport", nt)
    assert [(f.code, f.field) for f in flagged.flags] == [("quantity_unit_mismatch", "measurements[0].nt")]
    nt["measurements"] = {"nt": {"value": 1.4, "unit": "MM"}}
    record = validate_record("ImagingReport", nt)
    assert isinstance(record, ImagingReport)
    assert record.measurements[0].nt is not None and record.measurements[0].nt.unit == "mm"
    assert isinstance(validate_record("LabResult", {**LAB, "observations": [_obs("X", 1, "g/L")]}), LabResult)
