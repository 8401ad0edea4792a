"""Units of lab results: each analyte has the canonical unit of the lab's code table.

A result in another unit of the same kind is converted with its factor (mIU/L → mIU/mL), a
mass concentration of an analyte whose molar mass the table gives becomes a molar one
(glucose mg/dL → mmol/L), and the sent value and unit are kept. A unit that cannot be
reconciled with the analyte is flagged, never passed silently and never refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from transforms.hl7v2 import Message
from transforms.mapping import load_mapping
from transforms.records import LabResult, validate_record

REPO = Path(__file__).resolve().parents[3]
LAB = {"record_id": "lab:LIS:10:1"}
GLUCOSE = {"code": "GLU0", "name": "空腹血糖", "expected_unit": "mmol/L", "molar_mass": 180.16}


def _lab(**obs: Any) -> LabResult:
    record = validate_record("LabResult", {**LAB, "observations": [{"value_type": "NM", **obs}]})
    assert isinstance(record, LabResult)
    return record


def _flags(record: LabResult) -> list[tuple[str, str]]:
    return [(f.code, f.field or "") for f in record.flags]


def test_glucose_in_mg_per_dl_becomes_mmol_per_l_with_the_original_kept() -> None:
    """99 mg/dL glucose is 5.5 mmol/L (÷ 18.016); the reference range follows the value."""
    record = _lab(**GLUCOSE, value=99, unit="mg/dL", reference_range="70-100")
    obs = record.observations[0]
    assert obs.unit == "mmol/L" and round(obs.value, 1) == 5.5  # type: ignore[arg-type]
    assert (obs.original_value, obs.original_unit) == (99, "mg/dL")
    assert obs.reference_range is not None
    assert (round(obs.reference_range.low or 0, 2), round(obs.reference_range.high or 0, 2)) == (3.89, 5.55)
    assert obs.reference_range.text == "70-100"
    assert _flags(record) == []


def test_hcg_per_litre_becomes_per_millilitre() -> None:
    """hCG 1200 mIU/L (= IU/L) is 1.2 mIU/mL, the unit Chinese reports and the table use."""
    record = _lab(code="HCG", expected_unit="mIU/mL", value="1200", unit="mIU/L")
    obs = record.observations[0]
    assert (obs.value, obs.unit, obs.original_value, obs.original_unit) == (1.2, "mIU/mL", 1200, "mIU/L")
    assert _lab(code="HCG", expected_unit="mIU/mL", value=1.2, unit="IU/L").observations[0].value == 1.2
    assert _flags(record) == []


def test_millimolar_glucose_is_mmol_per_l_never_millimetres() -> None:
    """`mM` for glucose is stored as mmol/L with its value; nothing is converted or flagged."""
    record = _lab(**GLUCOSE, value=5.2, unit="mM")
    obs = record.observations[0]
    assert (obs.value, obs.unit, obs.original_value) == (5.2, "mmol/L", None)
    assert _flags(record) == []


def test_glucose_in_grams_per_litre_converts_through_its_molar_mass() -> None:
    """0.99 g/L glucose is the same 5.5 mmol/L as 99 mg/dL."""
    obs = _lab(**GLUCOSE, value=0.99, unit="g/L").observations[0]
    assert obs.unit == "mmol/L" and round(obs.value, 2) == 5.5  # type: ignore[arg-type]


def test_a_mass_unit_without_a_molar_mass_is_flagged_and_kept() -> None:
    """Bile acids (no molar mass in the table) in mg/dL cannot become μmol/L: stored as sent,
    flagged `lab_unit_mismatch`, not refused."""
    record = _lab(code="TBA", name="总胆汁酸", expected_unit="μmol/L", value=0.4, unit="mg/dL")
    obs = record.observations[0]
    assert (obs.value, obs.unit, obs.original_unit) == (0.4, "mg/dL", None)
    assert _flags(record) == [("lab_unit_mismatch", "observations[0].unit")]
    assert "μmol/L" in record.flags[0].message


@pytest.mark.parametrize("unit", ["U/L", "%", "MM"])
def test_a_unit_of_another_kind_is_flagged(unit: str) -> None:
    """Glucose in U/L or % is a mismatch; `MM` (millimetres or millimolar) is an unknown unit."""
    record = _lab(**GLUCOSE, value=5.2, unit=unit)
    assert record.observations[0].value == 5.2 and record.observations[0].unit == unit
    code = "lab_unit_unknown" if unit == "MM" else "lab_unit_mismatch"
    assert _flags(record) == [(code, "observations[0].unit")]


def test_an_unknown_unit_is_flagged_once() -> None:
    """An unknown unit is `lab_unit_unknown` only, not also a mismatch."""
    record = _lab(**GLUCOSE, value=5.2, unit="mmol/dl-x")
    assert _flags(record) == [("lab_unit_unknown", "observations[0].unit")]


def test_the_lis_mapping_gives_each_analyte_its_table_unit() -> None:
    """Through the shipped LIS mapping: glucose mg/dL, hCG mIU/L and a `mM` glucose reach the
    record converted; the table's canonical unit and molar mass travel with the observation."""
    message = Message(
        "\r".join(
            (
                "MSH|^~\\&|LIS|10|MCHENGINE|FY01|20240321113502||ORU^R01|U1|P|2.4|||AL|NE|CHN|UNICODE UTF-8",
                "PID|1||0010023456^^^HIS^PI||王小红||19940315|F",
                "OBR|1|JC1|R1|BIO^生化^L|||20240321083000||||||||SER^血清|||||||20240321113000||CHE|F",
                "OBX|1|NM|GLU0^空腹血糖^L||99|mg/dL|70-100|N|||F",
                "OBX|2|NM|HCG^总hCG^L||1200|mIU/L||N|||F",
                "OBX|3|NM|GLU2^2小时血糖^L||7.1|mM|<8.5|N|||F",
            )
        )
    )
    (mapped,) = load_mapping(REPO / "mappings/lis/oru_r01.yaml").apply(message)
    record = validate_record(mapped.record_type, {**mapped.record, "record_id": mapped.record_id})
    assert isinstance(record, LabResult)
    glucose, hcg, glucose2 = record.observations
    assert (glucose.unit, glucose.original_unit, glucose.molar_mass) == ("mmol/L", "mg/dL", 180.16)
    assert (hcg.value, hcg.unit) == (1.2, "mIU/mL")
    assert (glucose2.value, glucose2.unit) == (7.1, "mmol/L")
    assert record.flags == []
