"""Derived birth classes on DeliveryRecord and NewbornRecord: gestation, birth weight, Apgar."""

from __future__ import annotations

from typing import Any

import pytest

from transforms.records import DeliveryRecord, NewbornRecord, validate_record

BORN = "2025-03-02T08:15:00+08:00"


def newborn(**fields: Any) -> NewbornRecord:
    record = validate_record("NewbornRecord", {"record_id": "nb", "birth_time": BORN, **fields})
    assert isinstance(record, NewbornRecord)
    return record


@pytest.mark.parametrize(
    ("ga", "expected"),
    [("27+6", "extremely_preterm"), ("28+0", "very_preterm"), ("31+6", "very_preterm"),
     ("32+0", "moderate_to_late_preterm"), ("36+6", "moderate_to_late_preterm"), ("37+0", "term"),
     ("41+6", "term"), ("42+0", "post_term"), ("22周", "extremely_preterm")],
)  # fmt: skip
def test_gestational_class_at_each_boundary(ga: str, expected: str) -> None:
    """Preterm below 37+0 in three bands, term 37+0–41+6, post-term from 42+0 — on both records."""
    delivery = validate_record(
        "DeliveryRecord", {"record_id": "d", "delivery_time": BORN, "gestational_age": ga}
    )
    assert isinstance(delivery, DeliveryRecord)
    assert delivery.gestational_class == newborn(gestational_age=ga).gestational_class == expected


@pytest.mark.parametrize(
    ("grams", "expected"),
    [(999, "extremely_low"), (1000, "very_low"), (1499, "very_low"), (1500, "low"), (2499, "low"),
     (2500, "normal"), (3999, "normal"), (4000, "macrosomia"), ({"value": 3250, "unit": "g"}, "normal")],
)  # fmt: skip
def test_birth_weight_class_at_each_boundary(grams: Any, expected: str) -> None:
    """<1000 extremely low, <1500 very low, <2500 low, ≥4000 g macrosomia."""
    assert newborn(birth_weight=grams).birth_weight_class == expected


@pytest.mark.parametrize(
    ("score", "expected"),
    [(0, "severe"), (3, "severe"), (4, "moderate"), (7, "moderate"), (8, "normal"), (10, "normal")],
)
def test_apgar_category_at_each_boundary(score: int, expected: str) -> None:
    """0–3 severe, 4–7 moderate, 8–10 normal, at 1 and at 5 minutes separately."""
    record = newborn(apgar_1min=score, apgar_5min=9)
    assert (record.apgar_1min_category, record.apgar_5min_category) == (expected, "normal")
    assert newborn(apgar_5min=score).apgar_5min_category == expected


def test_missing_inputs_leave_the_classes_empty() -> None:
    """Without gestational age, weight or Apgar nothing is guessed."""
    record = newborn(apgar_1min=8)
    derived = (record.gestational_class, record.birth_weight_class, record.apgar_5min_category)
    assert derived == (None, None, None)
    assert record.apgar_1min_category == "normal"


def test_a_sent_class_is_recomputed_from_the_inputs() -> None:
    """A class that disagrees with the data is replaced, so stored records never contradict themselves."""
    record = newborn(birth_weight=4100, birth_weight_class="normal", gestational_class="term")
    assert (record.birth_weight_class, record.gestational_class) == ("macrosomia", None)


def test_classes_are_in_the_stored_json() -> None:
    """The record store keeps what dashboards read: the derived classes appear in the dump."""
    dumped = newborn(gestational_age="36+6", birth_weight=2480, apgar_1min=6).model_dump(mode="json")
    assert {k: dumped[k] for k in ("gestational_class", "birth_weight_class", "apgar_1min_category")} == {
        "gestational_class": "moderate_to_late_preterm",
        "birth_weight_class": "low",
        "apgar_1min_category": "moderate",
    }
