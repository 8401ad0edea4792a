"""SGA / AGA / LGA and the birth-weight centile against the INTERGROWTH-21st newborn standard."""

from __future__ import annotations

import math
from statistics import NormalDist

import pytest

from transforms.birth_size import INTERGROWTH_NEWBORN, birth_weight_for_ga, printed_centiles
from transforms.records import NewbornRecord, validate_record

BORN = "2025-03-02T08:15:00+08:00"


def days(ga: str) -> int:
    weeks, extra = ga.split("+")
    return int(weeks) * 7 + int(extra)


# Printed INTERGROWTH-21st centiles (kg): Villar 2014 (33+0–42+6) and Villar 2016 (24+0–32+6),
# as transcribed in the gigs R package (data-raw/tables/ig_nbs, weight percentiles).
PUBLISHED = [
    # (GA, sex, 3rd, 10th, 50th, 90th, 97th)
    ("24+0", "1", 0.44, 0.50, 0.64, 0.82, 0.92),
    ("28+0", "2", 0.70, 0.79, 1.01, 1.30, 1.46),
    ("32+6", "1", 1.34, 1.50, 1.92, 2.46, 2.77),
    ("33+0", "1", 1.18, 1.43, 1.95, 2.52, 2.82),
    ("36+0", "2", 1.92, 2.14, 2.60, 3.12, 3.39),
    ("40+0", "1", 2.63, 2.88, 3.38, 3.94, 4.22),
    ("40+0", "2", 2.55, 2.78, 3.26, 3.80, 4.08),
    ("42+6", "2", 2.80, 3.04, 3.53, 4.08, 4.37),
]


@pytest.mark.parametrize(("ga", "sex", "p3", "p10", "p50", "p90", "p97"), PUBLISHED)
def test_shipped_lines_are_the_published_centiles(
    ga: str, sex: str, p3: float, p10: float, p50: float, p90: float, p97: float
) -> None:
    """The shipped table gives the printed 3rd, 10th, 50th, 90th and 97th centile at each check."""
    lines = printed_centiles(days(ga), sex)
    assert lines is not None
    assert [lines[p] for p in (3, 10, 50, 90, 97)] == pytest.approx(
        [v * 1000 for v in (p3, p10, p50, p90, p97)]
    )
    for grams, centile in ((p3, 3.0), (p10, 10.0), (p50, 50.0), (p90, 90.0), (p97, 97.0)):
        size = birth_weight_for_ga(days(ga), sex, round(grams * 1000))
        assert size is not None and size.centile == centile


@pytest.mark.parametrize(
    ("ga", "sex", "p10", "p90"),
    [("26+3", "1", 690, 1130), ("30+0", "2", 1010, 1660), ("34+0", "1", 1710, 2790),
     ("37+0", "2", 2330, 3320), ("39+1", "1", 2760, 3810), ("41+6", "2", 2960, 4000)],
)  # fmt: skip
def test_sga_below_the_10th_and_lga_above_the_90th_a_line_itself_is_aga(
    ga: str, sex: str, p10: int, p90: int
) -> None:
    """1 g under the 10th centile is SGA, on it AGA; on the 90th AGA, 1 g over it LGA."""
    classes = [birth_weight_for_ga(days(ga), sex, g) for g in (p10 - 1, p10, p90, p90 + 1)]
    assert [c.size_class if c else None for c in classes] == ["SGA", "AGA", "AGA", "LGA"]
    assert [c.centile if c else None for c in classes] == [9.9, 10.0, 90.0, 90.1]


def test_the_two_standards_meet_with_a_step_at_33_weeks() -> None:
    """The published step: a boy's 10th centile falls from 1.50 kg (32+6, very preterm standard)
    to 1.43 kg (33+0, newborn standard), so 1.45 kg is SGA one day and AGA the next."""
    assert birth_weight_for_ga(days("32+6"), "1", 1450).size_class == "SGA"  # type: ignore[union-attr]
    assert birth_weight_for_ga(days("33+0"), "1", 1450).size_class == "AGA"  # type: ignore[union-attr]


def test_centile_follows_the_very_preterm_equation() -> None:
    """Villar 2016 gives the very preterm standard as log-normal: ln(kg) ~ N(−7.00303 +
    1.325911·√weeks + 0.0571937·male, 0.0373218). Interpolating the printed lines stays within
    2.6 centile points of it from 24+0 to 32+6, and the median weight is the 50th centile ± 2
    (the printed lines are rounded to 10 g, 2% of a 24-week baby's weight)."""
    normal = NormalDist()
    worst = 0.0
    for sex, male in (("1", 1), ("2", 0)):
        for ga_days in range(24 * 7, 33 * 7):
            mu = -7.00303 + 1.325911 * math.sqrt(ga_days / 7) + 0.0571937 * male
            for z in (-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5):
                grams = 1000 * math.exp(mu + z * math.sqrt(0.0373218))
                size = birth_weight_for_ga(ga_days, sex, grams)
                assert size is not None and size.centile is not None
                worst = max(worst, abs(size.centile - 100 * normal.cdf(z)))
            median = birth_weight_for_ga(ga_days, sex, 1000 * math.exp(mu))
            assert median is not None and median.centile == pytest.approx(50, abs=2)
    assert 0 < worst < 2.6


@pytest.mark.parametrize(
    ("ga_days", "sex", "grams"),
    [(24 * 7 - 1, "1", 600), (43 * 7, "2", 3200), (280, "0", 3200), (280, "9", 3200), (280, None, 3200),
     (None, "1", 3200), (280, "1", None)],
)  # fmt: skip
def test_outside_the_standard_or_without_sex_nothing_is_guessed(
    ga_days: int | None, sex: str | None, grams: float | None
) -> None:
    """Before 24+0 or after 42+6, sex unknown or not stated, or an input missing: no result."""
    assert birth_weight_for_ga(ga_days, sex, grams) is None


def test_beyond_the_3rd_or_97th_the_class_stands_without_a_centile() -> None:
    """The table has no lines beyond the 3rd and 97th: class SGA/LGA, centile empty."""
    low, high = birth_weight_for_ga(280, "1", 2000), birth_weight_for_ga(280, "2", 4500)
    assert (low.size_class, low.centile) == ("SGA", None)  # type: ignore[union-attr]
    assert (high.size_class, high.centile) == ("LGA", None)  # type: ignore[union-attr]


def newborn(**fields: object) -> NewbornRecord:
    record = validate_record("NewbornRecord", {"record_id": "nb", "birth_time": BORN, **fields})
    assert isinstance(record, NewbornRecord)
    return record


def test_newborn_record_carries_centile_class_and_reference() -> None:
    """A girl of 2700 g at 40+0 (5th 2.64, 10th 2.78 kg) is SGA at the 6.8th centile, standard named."""
    record = newborn(gestational_age="40+0", sex="2", birth_weight=2700)
    dumped = record.model_dump(mode="json")
    assert dumped["size_for_gestational_age"] == "SGA"
    assert dumped["birth_weight_centile"] == pytest.approx(6.8, abs=0.05)
    assert dumped["size_reference"] == INTERGROWTH_NEWBORN
    assert "INTERGROWTH-21st" in INTERGROWTH_NEWBORN and "Villar 2014" in INTERGROWTH_NEWBORN


def test_newborn_record_without_sex_or_in_kg_and_sent_values_recomputed() -> None:
    """Weight in kg is compared in grams; no sex → empty; a sent class is replaced."""
    in_kg = newborn(gestational_age="39+1", sex="1", birth_weight={"value": 4.0, "unit": "kg"})
    assert in_kg.size_for_gestational_age == "LGA"
    unknown = newborn(gestational_age="39+1", sex="9", birth_weight=3000, size_for_gestational_age="SGA")
    assert (unknown.size_for_gestational_age, unknown.birth_weight_centile, unknown.size_reference) == (
        None,
        None,
        None,
    )
