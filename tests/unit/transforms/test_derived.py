"""Unit tests for derived MCH fields (transforms.derived)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from transforms.converters import CONVERTERS
from transforms.derived import (
    age_in_days,
    age_in_months,
    edd_from_lmp,
    edd_from_ultrasound,
    gestational_age_at,
    gestational_age_from_ultrasound,
    parse_gestational_age,
)
from transforms.mapping.functions import FUNCTIONS
from transforms.records import ChildHealthExam, validate_record
from transforms.records.ga import GestationalAge


class TestParseGestationalAge:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("10+3", (10, 3)),
            ("39+1", (39, 1)),
            ("12周+4天", (12, 4)),
            ("12周4天", (12, 4)),
            ("16周", (16, 0)),
            ("16", (16, 0)),
            ("10+3周", (10, 3)),
            ("孕12周+4天", (12, 4)),
            (" 12 + 4 ", (12, 4)),
            ("１２＋４", (12, 4)),  # full-width digits and plus
            ("12w4d", (12, 4)),
            ("12W+4D", (12, 4)),
            ("12周4日", (12, 4)),
            ("39周2天", (39, 2)),
            ("39周+2", (39, 2)),
            ("39w2d", (39, 2)),
            ("40+0", (40, 0)),
            ("0+6", (0, 6)),
            ("45+6", (45, 6)),
        ],
    )
    def test_accepted_forms(self, text: str, expected: tuple[int, int]) -> None:
        assert parse_gestational_age(text) == expected

    @pytest.mark.parametrize(
        ("text", "needle"),
        [
            ("", "not in weeks\\+days form"),
            ("abc", "not in weeks\\+days form"),
            ("103", "not in weeks\\+days form"),
            ("10+", "not in weeks\\+days form"),
            ("+3", "not in weeks\\+days form"),
            ("10.5", "not in weeks\\+days form"),
            ("10+7", "0–6"),
            ("10+12", "0–6"),
            ("46+0", "0–45"),
            ("99周", "0–45"),
        ],
    )
    def test_rejected(self, text: str, needle: str) -> None:
        with pytest.raises(ValueError, match=needle):
            parse_gestational_age(text)

    def test_not_text(self) -> None:
        with pytest.raises(ValueError, match="must be text"):
            parse_gestational_age(10)  # type: ignore[arg-type]

    @given(st.integers(0, 45), st.integers(0, 6))
    def test_round_trip(self, weeks: int, days: int) -> None:
        assert parse_gestational_age(f"{weeks}+{days}") == (weeks, days)
        assert parse_gestational_age(f"{weeks}周+{days}天") == (weeks, days)

    @given(st.text(max_size=12))
    def test_arbitrary_text_parses_or_raises_value_error(self, text: str) -> None:
        try:
            weeks, days = parse_gestational_age(text)
        except ValueError:
            return
        assert 0 <= weeks <= 45 and 0 <= days <= 6

    def test_converter(self) -> None:
        assert CONVERTERS["gestational_age"]("12周+4天") == {"weeks": 12, "days": 4}


class TestGestationalAgeFromDates:
    def test_synthetic_registration_002(self) -> None:
        """002: LMP 2024-01-08, booked 2024-03-21 at 10+3, EDD 2024-10-14."""
        lmp = date(2024, 1, 8)
        assert gestational_age_at(lmp, date(2024, 3, 21)) == parse_gestational_age("10+3")
        assert edd_from_lmp(lmp) == date(2024, 10, 14)
        assert (edd_from_lmp(lmp) - lmp).days == 280

    @pytest.mark.parametrize(
        ("on", "expected"),
        [
            (date(2024, 1, 8), (0, 0)),
            (date(2024, 1, 14), (0, 6)),
            (date(2024, 1, 15), (1, 0)),
            (date(2024, 10, 14), (40, 0)),
            (date(2024, 10, 22), (41, 1)),
        ],
    )
    def test_completed_weeks_and_days(self, on: date, expected: tuple[int, int]) -> None:
        assert gestational_age_at(date(2024, 1, 8), on) == expected

    def test_edd_across_leap_day(self) -> None:
        assert edd_from_lmp(date(2023, 6, 1)) == date(2024, 3, 7)
        assert edd_from_lmp(date(2023, 5, 1)) == date(2024, 2, 5)

    def test_before_lmp(self) -> None:
        with pytest.raises(ValueError, match="before the start of the pregnancy"):
            gestational_age_at(date(2024, 1, 8), date(2024, 1, 7))

    def test_implausibly_long(self) -> None:
        with pytest.raises(ValueError, match="more than 45"):
            gestational_age_at(date(2023, 1, 1), date(2024, 1, 1))

    def test_datetime_refused(self) -> None:
        with pytest.raises(ValueError, match="calendar date"):
            gestational_age_at(datetime(2024, 1, 8, 9, 0), date(2024, 3, 21))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="calendar date"):
            edd_from_lmp("2024-01-08")  # type: ignore[arg-type]


class TestUltrasoundDating:
    def test_counts_on_from_the_exam(self) -> None:
        exam = date(2024, 3, 1)
        assert gestational_age_from_ultrasound(exam, (12, 4), exam) == (12, 4)
        assert gestational_age_from_ultrasound(exam, (12, 4), exam + timedelta(days=3)) == (13, 0)
        assert gestational_age_from_ultrasound(exam, (12, 4), date(2024, 4, 5)) == (17, 4)

    def test_edd_from_ultrasound_reaches_40_weeks(self) -> None:
        exam = date(2024, 3, 1)
        edd = edd_from_ultrasound(exam, (12, 4))
        assert gestational_age_from_ultrasound(exam, (12, 4), edd) == (40, 0)

    def test_agrees_with_lmp_when_dates_match(self) -> None:
        lmp = date(2024, 1, 8)
        exam = date(2024, 3, 21)
        ga = gestational_age_at(lmp, exam)
        on = date(2024, 6, 30)
        assert gestational_age_from_ultrasound(exam, ga, on) == gestational_age_at(lmp, on)
        assert edd_from_ultrasound(exam, ga) == edd_from_lmp(lmp)

    @pytest.mark.parametrize(
        ("ga", "needle"),
        [((12, 7), "0–6"), ((50, 0), "0–45"), ((12,), "\\(weeks, days\\)"), ((12.5, 0), "whole")],
    )
    def test_bad_exam_ga(self, ga: tuple[int, int], needle: str) -> None:
        with pytest.raises(ValueError, match=needle):
            gestational_age_from_ultrasound(date(2024, 3, 1), ga, date(2024, 4, 1))

    def test_date_before_conception(self) -> None:
        with pytest.raises(ValueError, match="before the start"):
            gestational_age_from_ultrasound(date(2024, 3, 1), (8, 0), date(2023, 12, 1))


class TestChildAge:
    @pytest.mark.parametrize(
        ("on", "months"),
        [
            (date(2024, 10, 8), 0),
            (date(2024, 11, 7), 0),
            (date(2024, 11, 8), 1),
            (date(2025, 4, 7), 5),
            (date(2025, 4, 8), 6),
            (date(2025, 4, 10), 6),
            (date(2025, 10, 8), 12),
        ],
    )
    def test_li_muyao_born_2024_10_08(self, on: date, months: int) -> None:
        assert age_in_months(date(2024, 10, 8), on) == months

    @pytest.mark.parametrize(
        ("birth", "on", "months"),
        [
            (date(2025, 1, 31), date(2025, 2, 27), 0),
            (date(2025, 1, 31), date(2025, 2, 28), 1),
            (date(2024, 1, 31), date(2024, 2, 28), 0),
            (date(2024, 1, 31), date(2024, 2, 29), 1),
            (date(2025, 1, 31), date(2025, 3, 30), 1),
            (date(2025, 1, 31), date(2025, 3, 31), 2),
            (date(2024, 2, 29), date(2025, 2, 28), 12),
            (date(2023, 12, 20), date(2024, 12, 23), 12),  # synthetic 026, 张子轩
            (date(2024, 12, 31), date(2025, 1, 30), 0),
            (date(2024, 3, 31), date(2024, 4, 29), 0),
            (date(2024, 3, 31), date(2024, 4, 30), 1),
            (date(2023, 12, 31), date(2024, 2, 28), 1),
            (date(2023, 12, 31), date(2024, 2, 29), 2),
            (date(2024, 2, 29), date(2024, 3, 28), 0),
            (date(2024, 2, 29), date(2024, 3, 29), 1),
            (date(2024, 2, 29), date(2025, 2, 27), 11),
            (date(2024, 2, 29), date(2028, 2, 28), 47),
            (date(2024, 2, 29), date(2028, 2, 29), 48),
        ],
    )
    def test_month_ends(self, birth: date, on: date, months: int) -> None:
        assert age_in_months(birth, on) == months

    def test_age_in_days(self) -> None:
        assert age_in_days(date(2024, 10, 8), date(2025, 4, 10)) == 184
        assert age_in_days(date(2023, 12, 20), date(2024, 12, 23)) == 369
        assert age_in_days(date(2024, 10, 8), date(2024, 10, 8)) == 0

    @pytest.mark.parametrize("func", [age_in_months, age_in_days])
    def test_before_birth(self, func: object) -> None:
        with pytest.raises(ValueError, match="before the birth date"):
            func(date(2024, 10, 8), date(2024, 10, 7))  # type: ignore[operator]

    @given(st.dates(date(2000, 1, 1), date(2040, 1, 1)), st.integers(0, 3000))
    def test_months_never_exceed_days(self, birth: date, days: int) -> None:
        on = birth + timedelta(days=days)
        months = age_in_months(birth, on)
        assert 0 <= months <= days // 28
        assert months >= days // 31
        assert age_in_months(birth, on + timedelta(days=1)) in (months, months + 1)


class TestOneRuleEverywhere:
    """The record models, the mapping converters and `derive` give the same answers."""

    @pytest.mark.parametrize(
        ("birth", "on", "months"),
        [("2025-01-31", "2025-02-28", 1), ("2024-01-31", "2024-02-29", 1), ("2024-01-31", "2024-02-28", 0),
         ("2024-02-29", "2025-02-28", 12), ("2024-10-08", "2025-04-07", 5)],
    )  # fmt: skip
    def test_child_exam_and_derive_agree_on_age(self, birth: str, on: str, months: int) -> None:
        """A ChildHealthExam without age_months and `derive: age_in_months` count the same months."""
        record = validate_record(
            "ChildHealthExam",
            {"record_id": "c", "person": {"his_id": "1", "birth_date": birth}, "exam_date": on},
        )
        assert isinstance(record, ChildHealthExam)
        compact = (birth.replace("-", ""), on.replace("-", ""))
        assert record.age_months == FUNCTIONS["age_in_months"](*compact) == months

    @pytest.mark.parametrize("text", ["12周4日", "39周+2", "39w2d", "39周2天", "16周", "10+3", "１０＋３"])
    def test_record_field_and_converter_agree_on_gestational_age(self, text: str) -> None:
        """The model field and the mapping converter read every spelling alike."""
        assert GestationalAge.model_validate(text).model_dump() == CONVERTERS["gestational_age"](text)

    @pytest.mark.parametrize("text", ["10+", "46+0", "10+7", "103", "12.5周"])
    def test_record_field_and_converter_refuse_alike(self, text: str) -> None:
        """What one refuses the other refuses, with the same sentence."""
        with pytest.raises(ValueError) as converted:
            CONVERTERS["gestational_age"](text)
        with pytest.raises(ValidationError) as modelled:
            GestationalAge.model_validate(text)
        assert str(converted.value) in str(modelled.value)
