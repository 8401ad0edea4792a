"""Unit tests for the named mapping converters (transforms.converters)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from transforms.converters import (
    CONVERTERS,
    DEFAULT_TZ,
    hl7_date,
    hl7_datetime,
    integer,
    number,
    parse_hl7_datetime,
    sex,
    text,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")


class TestParseHl7Datetime:
    @pytest.mark.parametrize(
        ("stamp", "expected"),
        [
            ("2024", datetime(2024, 1, 1)),
            ("202403", datetime(2024, 3, 1)),
            ("20240321", datetime(2024, 3, 21)),
            ("2024032108", datetime(2024, 3, 21, 8)),
            ("202403210832", datetime(2024, 3, 21, 8, 32)),
            ("20240321083215", datetime(2024, 3, 21, 8, 32, 15)),
        ],
    )
    def test_every_precision_is_read(self, stamp: str, expected: datetime) -> None:
        """Year, month, day, hour, minute and second precisions fill the rest with the start."""
        assert parse_hl7_datetime(stamp) == expected.replace(tzinfo=SHANGHAI)

    @pytest.mark.parametrize(
        ("fraction", "micro"),
        [("1", 100_000), ("12", 120_000), ("123", 123_000), ("1234", 123_400)],
    )
    def test_fractional_seconds(self, fraction: str, micro: int) -> None:
        """One to four digits of fractional seconds become microseconds."""
        assert parse_hl7_datetime(f"20240321083215.{fraction}").microsecond == micro

    def test_no_offset_means_shanghai(self) -> None:
        """A time without an offset is Asia/Shanghai, UTC+8."""
        value = parse_hl7_datetime("20240321083215")
        assert value.tzinfo == SHANGHAI == DEFAULT_TZ
        assert value.utcoffset() == timedelta(hours=8)

    def test_other_default_timezone(self) -> None:
        """A caller's zone replaces Asia/Shanghai for times without an offset."""
        tz = ZoneInfo("Europe/Berlin")
        assert parse_hl7_datetime("20240701120000", tz).utcoffset() == timedelta(hours=2)

    @pytest.mark.parametrize(
        ("stamp", "offset"),
        [
            ("20240321083215+0800", timedelta(hours=8)),
            ("20240321083215+0000", timedelta(0)),
            ("20240321083215-0500", timedelta(hours=-5)),
            ("20240321083215+0530", timedelta(hours=5, minutes=30)),
            ("202403210832-0330", timedelta(hours=-3, minutes=-30)),
            ("20240321083215.25+0100", timedelta(hours=1)),
        ],
    )
    def test_explicit_offsets(self, stamp: str, offset: timedelta) -> None:
        """An explicit +/-ZZZZ offset is kept on the aware result."""
        assert parse_hl7_datetime(stamp).utcoffset() == offset

    def test_same_instant_across_offsets(self) -> None:
        """08:32 in Shanghai and 00:32 UTC are the same instant."""
        assert parse_hl7_datetime("20240321083215") == parse_hl7_datetime("20240321003215+0000")

    def test_degree_of_precision_component_is_ignored(self) -> None:
        """A TS with a second component (degree of precision) reads its first component."""
        assert parse_hl7_datetime("20240321^D") == datetime(2024, 3, 21, tzinfo=SHANGHAI)

    def test_surrounding_whitespace_is_ignored(self) -> None:
        """Leading and trailing spaces do not stop a time from being read."""
        assert parse_hl7_datetime(" 20240321 ") == datetime(2024, 3, 21, tzinfo=SHANGHAI)

    @pytest.mark.parametrize(
        "stamp",
        ["20240230", "20241345", "20230229", "20240321250000", "20240321086000", "00000101"],
    )
    def test_impossible_dates_raise_value_error(self, stamp: str) -> None:
        """A date or time that cannot exist raises ValueError."""
        with pytest.raises(ValueError, match="impossible"):
            parse_hl7_datetime(stamp)

    @pytest.mark.parametrize("stamp", ["", "abc", "24-03-21", "2024-03-21", "202", "2024032108321"])
    def test_non_dates_raise_value_error(self, stamp: str) -> None:
        """Text that is not an HL7 date/time raises ValueError."""
        with pytest.raises(ValueError):
            parse_hl7_datetime(stamp)

    def test_leap_day_is_accepted(self) -> None:
        """29 February of a leap year is a real date."""
        assert parse_hl7_datetime("20240229").day == 29


class TestHl7Datetime:
    def test_returns_iso_text_with_offset(self) -> None:
        """The mapping converter gives ISO 8601 text with the offset."""
        assert hl7_datetime("20240321083215") == "2024-03-21T08:32:15+08:00"
        assert hl7_datetime("20240321003215+0000") == "2024-03-21T00:32:15+00:00"

    def test_impossible_date_raises(self) -> None:
        """An impossible date/time raises ValueError."""
        with pytest.raises(ValueError):
            hl7_datetime("20241345")


class TestHl7Date:
    def test_date_becomes_iso(self) -> None:
        """YYYYMMDD becomes YYYY-MM-DD."""
        assert hl7_date("19940315") == "1994-03-15"

    def test_time_part_is_dropped(self) -> None:
        """A DTM given to hl7_date keeps only its date."""
        assert hl7_date("19940315083000+0800") == "1994-03-15"

    @pytest.mark.parametrize("value", ["20241345", "20240230", "19940231"])
    def test_impossible_date_raises(self, value: str) -> None:
        """A date that cannot exist raises ValueError."""
        with pytest.raises(ValueError, match="impossible"):
            hl7_date(value)

    @pytest.mark.parametrize("value", ["", "1994", "199403", "1994-03-15", "abcdefgh"])
    def test_not_a_date_raises(self, value: str) -> None:
        """Text shorter than YYYYMMDD or not digits raises ValueError."""
        with pytest.raises(ValueError):
            hl7_date(value)


class TestSex:
    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ("M", "1"),
            ("F", "2"),
            ("U", "0"),
            ("男", "1"),
            ("女", "2"),
            ("未知", "0"),
            ("m", "1"),
            ("f", "2"),
            (" F ", "2"),
            ("Male", "1"),
            ("FEMALE", "2"),
            ("O", "9"),
            ("A", "9"),
            ("N", "9"),
            ("1", "1"),
            ("2", "2"),
            ("0", "0"),
            ("9", "9"),
        ],
    )
    def test_maps_onto_gb_t_2261_1(self, value: str, code: str) -> None:
        """HL7, English and Chinese sex values map onto GB/T 2261.1 codes 0/1/2/9."""
        assert sex(value) == code

    @pytest.mark.parametrize("value", ["", "X", "3", "男性", "boy"])
    def test_unknown_value_raises(self, value: str) -> None:
        """A value outside the table raises ValueError."""
        with pytest.raises(ValueError, match="unknown sex"):
            sex(value)


class TestNumber:
    @pytest.mark.parametrize(
        ("value", "expected"),
        [("118", 118), ("-3", -3), (" 42 ", 42), ("1,234", 1234), ("+7", 7)],
    )
    def test_whole_numbers_are_ints(self, value: str, expected: int) -> None:
        """Whole numbers written without a point come back as int."""
        result = number(value)
        assert result == expected
        assert type(result) is int

    @pytest.mark.parametrize(
        ("value", "expected"),
        [("7.85", 7.85), ("1.0", 1.0), ("-0.5", -0.5), ("1,234.5", 1234.5), (".5", 0.5)],
    )
    def test_decimals_are_floats(self, value: str, expected: float) -> None:
        """Numbers with a decimal point come back as float, even 1.0."""
        result = number(value)
        assert result == expected
        assert type(result) is float

    @pytest.mark.parametrize("value", ["", "abc", "<5.1", "110-150", "1.2.3", "阴性"])
    def test_not_a_number_raises(self, value: str) -> None:
        """Text that is not a number (incl. ranges and comparisons) raises ValueError."""
        with pytest.raises(ValueError, match="not a number"):
            number(value)

    @pytest.mark.parametrize("value", ["NaN", "-Infinity", "1e999"])
    def test_non_finite_values_are_not_numbers(self, value: str) -> None:
        """NaN and infinities are not JSON numbers, so they raise ValueError like other text."""
        with pytest.raises(ValueError):
            number(value)


class TestInteger:
    def test_whole_number(self) -> None:
        """integer reads whole numbers, spaces allowed."""
        assert integer(" 12 ") == 12

    @pytest.mark.parametrize("value", ["", "1.5", "abc"])
    def test_not_whole_raises(self, value: str) -> None:
        """A fraction or text raises ValueError."""
        with pytest.raises(ValueError, match="whole number"):
            integer(value)


class TestConverterTable:
    def test_names(self) -> None:
        """The mapping language knows exactly these converter names."""
        assert {"text", "hl7_datetime", "hl7_date", "sex", "number", "integer"} <= set(CONVERTERS)

    def test_text_is_identity(self) -> None:
        """`text` returns its input unchanged, Chinese included."""
        assert text("陈思雨 𠮷") == "陈思雨 𠮷"

    @settings(max_examples=300, deadline=None)
    @given(
        name=st.sampled_from(sorted(CONVERTERS)),
        value=st.text()
        | st.from_regex(r"\A[0-9]{4,14}(\.[0-9]{1,4})?([+-][0-9]{4})?\Z")
        | st.sampled_from(["男", "女", "M", "F", "1,234.5", "nan", "-inf", "1e400"]),
    )
    def test_any_string_converts_or_raises_value_error(self, name: str, value: str) -> None:
        """Every converter either returns a value or raises ValueError, never anything else."""
        try:
            result = CONVERTERS[name](value)
        except ValueError:
            return
        assert result is not None

    @settings(max_examples=200, deadline=None)
    @given(value=st.from_regex(r"\A[0-9]{4,14}([+-](0[0-9]|1[0-3])[0-5][0-9])?\Z"))
    def test_datetime_results_are_aware_and_json_ready(self, value: str) -> None:
        """A DTM that converts gives ISO text with an offset, parseable back to the same instant."""
        try:
            iso = hl7_datetime(value)
        except ValueError:
            return
        json.dumps(iso)
        back = datetime.fromisoformat(iso)
        assert back.tzinfo is not None
        assert back == parse_hl7_datetime(value)
        assert isinstance(back.tzinfo, timezone | ZoneInfo)
