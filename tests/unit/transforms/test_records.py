"""Unit tests for the canonical record models (transforms.records).

Values come from the synthetic Chinese samples in the conformance corpus
(../shared/conformance/hl7v2/chinese-synthetic/): 陈思雨 and her daughter 李沐瑶 through one
pregnancy, 杨倩's ID card with a wrong check character, 邱月's leap-day ID card.
"""

from __future__ import annotations

import re
import typing
from datetime import date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from transforms.records import (
    RECORD_TYPES,
    ChildHealthExam,
    DeliveryRecord,
    ImagingReport,
    LabResult,
    NewbornRecord,
    NewbornScreening,
    Person,
    PostpartumVisit,
    PregnancyRegistration,
    PremaritalExam,
    PrenatalVisit,
    Record,
    RiskAssessment,
    UnknownRecordType,
    describe_validation_error,
    validate_record,
)
from transforms.records.child import child_anaemia
from transforms.records.ga import GestationalAge, parse_gestational_age
from transforms.records.idcard import (
    birth_date_from_id_card,
    check_char,
    id_card_problems,
    mask_id_card,
    sex_from_id_card,
    upgrade_legacy_id_card,
    validate_id_card,
)
from transforms.records.pregnancy import RiskGrade, highest_colour, naegele
from transforms.records.quantities import is_known_lab_unit

MOTHER_ID = "500112199403151525"  # 陈思雨, born 1994-03-15, female
DAUGHTER_ID = "500112202410080264"  # 李沐瑶, born 2024-10-08, female
BAD_CHECK_ID = "500112199210052283"  # 杨倩: check character should be 0
LEAP_DAY_ID = "500112200002293026"  # 邱月, born 2000-02-29
MALE_ID = "500112199607210312"  # 刘洋, male
X_ID = "50011219950220168X"  # 周晓燕
LEGACY_ID = "500112940315152"  # 陈思雨's number in the 15-digit form

MOTHER = {
    "id_card": MOTHER_ID,
    "his_id": "0010023456",
    "his_system": "HIS",
    "mch_handbook_no": "FY2024000123",
    "name": "陈思雨",
    "sex": "2",
    "birth_date": "1994-03-15",
}
DAUGHTER = {
    "id_card": DAUGHTER_ID,
    "his_id": "0010031207",
    "his_system": "HIS",
    "name": "李沐瑶",
    "sex": "2",
    "birth_date": "2024-10-08",
}
SOURCE = {
    "channel": "his-fy01",
    "sending_system": "HIS^FY01",
    "control_id": "HIS2024050210203300088",
    "event_time": "2024-05-02T10:10:00+08:00",
    "journal_id": 88,
}


RecordT = TypeVar("RecordT", bound=Record)


def make(model: type[RecordT], data: dict[str, Any]) -> RecordT:
    """validate_record, typed for the test's assertions."""
    record = validate_record(model.__name__, data)
    assert isinstance(record, model)
    return record


def errors_of(record_type: str, data: dict[str, Any]) -> list[str]:
    with pytest.raises(ValidationError) as info:
        validate_record(record_type, data)
    return describe_validation_error(info.value, record_type).splitlines()


def future(days: int = 30) -> str:
    """A date `days` after today in the hospital's time zone (what the models compare with)."""
    return (datetime.now(ZoneInfo("Asia/Shanghai")).date() + timedelta(days=days)).isoformat()


# --------------------------------------------------------------------------- 身份证号


class TestIdCard:
    def test_check_character_follows_iso_7064(self) -> None:
        """The check character of 陈思雨's number is computed with MOD 11-2 weights."""
        assert check_char(MOTHER_ID[:17]) == "5"
        assert check_char(X_ID[:17]) == "X"

    def test_check_char_refuses_anything_but_17_digits(self) -> None:
        """check_char says what it needs when given the wrong input."""
        with pytest.raises(ValueError, match="17 ASCII digits"):
            check_char("5001121994031515")

    @pytest.mark.parametrize(
        ("number", "born", "sex"),
        [
            (MOTHER_ID, "1994-03-15", "2"),
            (DAUGHTER_ID, date(2024, 10, 8), "2"),
            (LEAP_DAY_ID, "20000229", "2"),
            (MALE_ID, "1996-07-21", "1"),
            (X_ID, "1995-02-20", "2"),
        ],
    )
    def test_sound_numbers_have_no_problems(self, number: str, born: Any, sex: str) -> None:
        """A correct number consistent with birth date and sex passes, leap day included."""
        assert validate_id_card(number, born, sex) == []

    def test_wrong_check_character_names_the_expected_one(self) -> None:
        """杨倩's number is reported masked, with the check character it should have."""
        assert validate_id_card(BAD_CHECK_ID, "1992-10-05", "2") == [
            "ID card 5001…283 check character is 3, expected 0"
        ]
        assert id_card_problems(BAD_CHECK_ID)[0].code == "id_card_check_digit"

    def test_lowercase_x_is_accepted(self) -> None:
        """A final lowercase x is the same check character as X."""
        assert validate_id_card(X_ID.lower(), "1995-02-20", "2") == []

    def test_full_width_digits_are_named(self) -> None:
        """Full-width digits from a Chinese IME are a problem that lists them."""
        wide = MOTHER_ID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        [problem] = id_card_problems(wide)
        assert problem.code == "id_card_full_width"
        assert "５, ０, １, ２" in problem.message
        assert "ASCII digits" in problem.message

    def test_legacy_number_is_accepted_with_a_note(self) -> None:
        """A 15-digit number is flagged but still linkable, as its 18-digit upgrade."""
        [problem] = id_card_problems(LEGACY_ID, "1994-03-15", "2")
        assert problem.code == "id_card_legacy_15"
        assert not problem.blocks_linking
        assert upgrade_legacy_id_card(LEGACY_ID) == MOTHER_ID

    def test_impossible_birth_date_part(self) -> None:
        """29 February of a non-leap year is not a real birth date."""
        first17 = "50011219930229302"
        [problem] = id_card_problems(first17 + check_char(first17))
        assert problem.code == "id_card_birth_date"
        assert "19930229 is not a real date of birth" in problem.message

    def test_birth_date_must_match_the_person(self) -> None:
        """The birth date in the number must equal the person's birth_date."""
        assert validate_id_card(MOTHER_ID, "1994-03-16") == [
            "ID card 5001…525 birth date 1994-03-15 differs from birth_date 1994-03-16"
        ]

    def test_sequence_parity_must_match_sex(self) -> None:
        """An even sequence belongs to a woman; a man with it is reported."""
        assert validate_id_card(MOTHER_ID, sex="1") == [
            "ID card 5001…525 sequence 152 is even (female) but sex is 1 (male)"
        ]
        assert validate_id_card(MOTHER_ID, sex="M") != []
        assert validate_id_card(MOTHER_ID, sex="9") == []

    @pytest.mark.parametrize(
        ("number", "code"),
        [("50011219940315152", "id_card_length"), ("50011219940315152Y", "id_card_characters")],
    )
    def test_malformed_numbers(self, number: str, code: str) -> None:
        """Wrong length and stray characters are reported as such."""
        assert [p.code for p in id_card_problems(number)] == [code]

    def test_empty_number_has_no_problems(self) -> None:
        """An absent ID card is not a wrong one."""
        assert validate_id_card(None) == [] and validate_id_card("  ") == []

    def test_birth_date_and_sex_can_be_read_from_the_number(self) -> None:
        """Converters can fill a newborn's birth date and sex from the number."""
        assert birth_date_from_id_card(DAUGHTER_ID) == date(2024, 10, 8)
        assert sex_from_id_card(MALE_ID) == "1" and sex_from_id_card(DAUGHTER_ID) == "2"
        assert birth_date_from_id_card("abc") is None

    def test_masking_keeps_only_the_ends(self) -> None:
        """Messages show 4 leading and 3 trailing characters, never the whole number."""
        assert mask_id_card(MOTHER_ID) == "5001…525"

    @given(st.text(alphabet="0123456789", min_size=17, max_size=17))
    def test_any_17_digits_with_their_check_char_pass_the_check(self, first17: str) -> None:
        """Appending check_char always gives a number whose check character is right."""
        codes = {p.code for p in id_card_problems(first17 + check_char(first17))}
        assert "id_card_check_digit" not in codes
        wrong = next(c for c in "0123456789X" if c != check_char(first17))
        codes = {p.code for p in id_card_problems(first17 + wrong)}
        assert "id_card_check_digit" in codes


def with_area(area: str, rest: str = "19800101002") -> str:
    """A number with the given area code and a correct check character (born 1980-01-01, female)."""
    return area + rest + check_char(area + rest)


class TestIdCardArea:
    """The first six digits are checked against GB/T 2260; an unknown code is flagged, never refused."""

    @pytest.mark.parametrize(
        "area",
        [
            "500157",  # 重庆市两江新区, created 2025
            "110105",  # 北京市朝阳区, unchanged since the list began
            "110103",  # 北京市崇文区, merged into 东城区 in 2010: old cards still carry it
            "500112",  # 重庆市渝北区, retired in 2025: 陈思雨's number
            "120110",  # 天津市东郊区 until 1991, the same code as 东丽区 since 1992
            "810000",  # 香港特别行政区 (residence permits for Hong Kong residents)
        ],
    )
    def test_current_and_retired_codes_are_known(self, area: str) -> None:
        """Cards are not reissued when divisions change, so every code the list ever held passes."""
        assert id_card_problems(with_area(area), "1980-01-01", "2") == []

    @pytest.mark.parametrize("area", ["000000", "999999", "110199", "830000"])
    def test_unknown_codes_are_flagged_without_blocking_linking(self, area: str) -> None:
        """000000, 999999, an unused county number and a code outside the list are named."""
        [problem] = id_card_problems(with_area(area), "1980-01-01", "2")
        assert problem.code == "id_card_area_unknown"
        assert f"area code {area} is not a GB/T 2260 division code" in problem.message
        assert not problem.blocks_linking

    def test_legacy_number_area_is_checked_too(self) -> None:
        """A 15-digit number carries the same area code in its first six digits."""
        codes = [p.code for p in id_card_problems("999999800101002")]
        assert codes == ["id_card_area_unknown", "id_card_legacy_15"]

    def test_unknown_area_with_a_valid_check_character_is_stored_flagged(self) -> None:
        """The record is kept, the flag names person.id_card, and the number still links."""
        number = with_area("000000")
        record = validate_record(
            "Person",
            {"record_id": "p", "person": {"id_card": number, "birth_date": "1980-01-01", "sex": "2"}},
        )
        assert record.person is not None and record.person.id_card == number
        assert [(f.code, f.field) for f in record.flags] == [("id_card_area_unknown", "person.id_card")]
        assert record.person.id_card_valid and record.person.id_card_for_linking == number

    def test_check_character_rule_is_unchanged_for_an_unknown_area(self) -> None:
        """A wrong check character is still reported (and blocks linking) next to the area flag."""
        number = with_area("999999")
        wrong = number[:17] + ("0" if number[17] != "0" else "1")
        codes = [p.code for p in id_card_problems(wrong)]
        assert codes == ["id_card_area_unknown", "id_card_check_digit"]


# --------------------------------------------------------------------------- people


class TestPerson:
    def test_registration_sample_is_valid(self) -> None:
        """陈思雨's ADT^A04 (sample 001) becomes a Person with a linkable ID card."""
        person = make(
            Person,
            {
                "record_id": "person:HIS:0010023456",
                "person": MOTHER,
                "identifiers": [
                    {"value": "0010023456", "type": "PI", "authority": "HIS"},
                    {"value": MOTHER_ID, "type": "ID"},
                    {"value": "FY2024000123", "type": "MCH"},
                ],
                "name_pinyin": "CHEN SIYU",
                "ethnicity": "01^汉族^GB3304",
                "marital_status": {"code": "M", "display": "已婚"},
                "phone": "13900001234",
                "address": {"street": "金龙路18号3栋2单元501", "county_code": "500112"},
                "source": {**SOURCE, "event_time": "2024-03-21T08:32:00+08:00"},
            },
        )
        assert isinstance(person, Person)
        assert person.flags == []
        assert person.person.id_card_valid
        assert person.person.id_card_for_linking == MOTHER_ID
        assert person.ethnicity is not None and person.ethnicity.display == "汉族"

    def test_bad_check_digit_is_flagged_not_rejected(self) -> None:
        """杨倩's wrong number is kept as sent, flagged, and marked unusable for linking."""
        record = make(Person,
            {
                "record_id": "person:HIS:0010032871",
                "person": {"id_card": BAD_CHECK_ID, "his_id": "0010032871", "name": "杨倩",
                           "sex": "2", "birth_date": "1992-10-05"},
            },
        )  # fmt: skip
        assert record.person is not None
        assert record.person.id_card == BAD_CHECK_ID
        assert record.person.id_card_valid is False
        assert record.person.id_card_for_linking is None
        assert [(f.code, f.field, f.message) for f in record.flags] == [
            (
                "id_card_check_digit",
                "person.id_card",
                "ID card 5001…283 check character is 3, expected 0",
            )
        ]

    def test_lowercase_x_is_stored_upper_case(self) -> None:
        """A lowercase x is normalised on the way in and the number stays linkable."""
        record = make(Person, {"record_id": "p", "person": {"id_card": X_ID.lower() + " "}})
        assert record.person is not None and record.person.id_card == X_ID
        assert record.flags == [] and record.person.id_card_valid

    def test_full_width_number_is_flagged(self) -> None:
        """Full-width digits keep the record but block linking by that number."""
        wide = MOTHER_ID.translate(str.maketrans("0123456789", "０１２３４５６７８９"))
        record = make(Person, {"record_id": "p", "person": {"id_card": wide}})
        assert record.person is not None and not record.person.id_card_valid
        assert [f.code for f in record.flags] == ["id_card_full_width"]

    def test_legacy_number_links_by_its_upgrade(self) -> None:
        """A 15-digit number is flagged and linked as the 18-digit number it became."""
        record = make(Person, {"record_id": "p", "person": {**MOTHER, "id_card": LEGACY_ID}})
        assert record.person is not None and record.person.id_card_valid
        assert record.person.id_card_for_linking == MOTHER_ID
        assert [f.code for f in record.flags] == ["id_card_legacy_15"]

    def test_mother_id_card_is_checked_too(self) -> None:
        """On a newborn record a wrong mother's number is flagged under mother.id_card."""
        record = make(Person,
            {"record_id": "p", "person": {"his_id": "0010031207", "name": "陈思雨之女"},
             "mother": {"id_card": BAD_CHECK_ID}},
        )  # fmt: skip
        assert [(f.code, f.field) for f in record.flags] == [("id_card_check_digit", "mother.id_card")]

    def test_round_trip_keeps_flags_single(self) -> None:
        """A stored record validates again unchanged: derived fields ignored, flags not doubled."""
        data = {"record_id": "p", "person": {"id_card": BAD_CHECK_ID, "sex": "2"}}
        record = make(Person, data)
        again = make(Person, record.model_dump(mode="json"))
        assert again == record and len(again.flags) == 1

    def test_sex_must_be_a_gb_code(self) -> None:
        """HL7 letters are refused with a pointer to the sex converter."""
        assert errors_of("Person", {"record_id": "p", "person": {"sex": "F"}}) == [
            "Person.person.sex: 'F' is not a GB/T 2261.1 sex code (0 unknown, 1 male, "
            "2 female, 9 not stated); map HL7 M/F/U with the `sex` converter"
        ]

    def test_person_needs_its_identity(self) -> None:
        """A Person record without `person` is refused."""
        assert errors_of("Person", {"record_id": "p"}) == ["Person.person: is required but missing"]

    def test_county_code_has_six_digits(self) -> None:
        """An address county code that is not 6 digits is an error naming the value."""
        lines = errors_of("Person", {"record_id": "p", "person": MOTHER, "address": {"county_code": "5001"}})
        assert lines == ["Person.address.county_code: '5001' is not a 6-digit administrative division code"]

    def test_birth_date_in_the_future_is_an_error(self) -> None:
        """Nobody is born next month."""
        lines = errors_of("Person", {"record_id": "p", "person": {"birth_date": future()}})
        assert lines == [f"Person.person.birth_date: {future()} is in the future"]


# --------------------------------------------------------------------------- 孕周


class TestGestationalAge:
    def test_w_plus_d_text_is_parsed(self) -> None:
        """`10+3` is 10 weeks 3 days, 73 days."""
        ga = parse_gestational_age("10+3")
        assert (ga.weeks, ga.days, ga.total_days, str(ga)) == (10, 3, 73, "10+3")

    @pytest.mark.parametrize(
        ("text", "weeks", "days"),
        [("16+3周", 16, 3), ("12周+4天", 12, 4), ("22周2天", 22, 2), ("39w1d", 39, 1),
         ("16周", 16, 0), (" 28 + 5 ", 28, 5), ("１０＋３", 10, 3), ("12周4日", 12, 4), ("39周+2", 39, 2)],
    )  # fmt: skip
    def test_usual_spellings_are_parsed(self, text: str, weeks: int, days: int) -> None:
        """The ways Chinese forms write gestational age all parse."""
        assert parse_gestational_age(text) == GestationalAge(weeks=weeks, days=days)

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("46+0", "has 46 weeks; expected 0–45"),
            ("10+7", "has 7 days; expected 0–6"),
            ("103", "not in weeks\\+days form"),
        ],
    )
    def test_out_of_range_or_unreadable(self, text: str, message: str) -> None:
        """Weeks over 45, days over 6 and digits without a separator are refused."""
        with pytest.raises(ValueError, match=message):
            parse_gestational_age(text)

    def test_models_take_the_text_directly(self) -> None:
        """A record field accepts `16+3` and stores weeks and days."""
        visit = make(PrenatalVisit, {"record_id": "v", "visit_date": "2024-05-02", "gestational_age": "16+3"})
        assert isinstance(visit, PrenatalVisit)
        assert visit.gestational_age == GestationalAge(weeks=16, days=3)

    def test_model_error_names_the_field(self) -> None:
        """An impossible gestational age in a visit is one clear line."""
        lines = errors_of(
            "PrenatalVisit", {"record_id": "v", "visit_date": "2024-05-02", "gestational_age": "46+1"}
        )
        assert lines == ["PrenatalVisit.gestational_age: gestational age '46+1' has 46 weeks; expected 0–45"]


# --------------------------------------------------------------------------- pregnancy


REGISTRATION = {
    "record_id": "mch:HIS:FY01:JC2024032100021",
    "person": MOTHER,
    "source": {**SOURCE, "event_time": "2024-03-21T10:05:00+08:00"},
    "handbook_no": "FY2024000123",
    "registration_date": "2024-03-21",
    "gestational_age": "10+3",
    "lmp": "2024-01-08",
    "edd": "2024-10-14",
    "gravidity": 2,
    "parity": 0,
    "obstetric_history": "人工流产1次（2021年）",
    "height": {"value": 160.0, "unit": "cm"},
    "weight": {"value": 52.5, "unit": "kg"},
    "pre_pregnancy_weight": 51.2,
    "blood_pressure": {"systolic": {"value": 112, "unit": "mmHg"}, "diastolic": 72},
    "risk": {"colour": "G^绿色^99FYRISK"},
}


class TestPregnancyRegistration:
    def test_sample_002_is_valid(self) -> None:
        """陈思雨's booking at 10+3 with LMP, EDD and G2P0 validates without flags."""
        record = make(PregnancyRegistration, REGISTRATION)
        assert isinstance(record, PregnancyRegistration)
        assert record.flags == []
        assert record.gestational_age == GestationalAge(weeks=10, days=3)
        assert record.obstetric_history is not None
        assert record.obstetric_history.text == "人工流产1次（2021年）"
        assert record.risk is not None and record.risk.colour == "green"
        assert record.bmi == 20.0
        assert record.model_dump()["bmi"] == 20.0

    def test_edd_not_lmp_plus_280_is_flagged(self) -> None:
        """An EDD that is neither LMP + 280 days nor Naegele's date is flagged."""
        record = make(PregnancyRegistration, {**REGISTRATION, "edd": "2024-10-20"})
        assert [(f.code, f.field, f.message) for f in record.flags] == [
            (
                "edd_inconsistent",
                "edd",
                "EDD 2024-10-20 is not LMP 2024-01-08 + 280 days (2024-10-14) and no "
                "ultrasound correction is recorded",
            )
        ]

    def test_ultrasound_corrected_edd_is_not_flagged(self) -> None:
        """An EDD corrected by early ultrasound may differ from LMP + 280."""
        record = make(
            PregnancyRegistration,
            {**REGISTRATION, "edd": "2024-10-20", "edd_corrected_by_ultrasound": "是"},
        )
        assert record.flags == []

    def test_naegele_date_is_accepted(self) -> None:
        """LMP + 9 months + 7 days, which many forms use, is not flagged."""
        assert naegele(date(2024, 1, 8)) == date(2024, 10, 15)
        record = make(PregnancyRegistration, {**REGISTRATION, "edd": "2024-10-15"})
        assert record.flags == []

    def test_parity_not_below_gravidity_is_flagged(self) -> None:
        """G1P1 while pregnant cannot be right: flagged, not rejected."""
        record = make(PregnancyRegistration, {**REGISTRATION, "gravidity": 1, "parity": 1})
        assert [f.code for f in record.flags] == ["parity_not_below_gravidity"]

    def test_gravidity_range(self) -> None:
        """Gravidity 0 on a registration is an error naming the range."""
        lines = errors_of("PregnancyRegistration", {**REGISTRATION, "gravidity": 0})
        assert lines == ["PregnancyRegistration.gravidity: 0 is outside the plausible gravidity 1–30"]

    def test_closed_needs_a_reason(self) -> None:
        """A closed pregnancy says why it was closed."""
        lines = errors_of("PregnancyRegistration", {**REGISTRATION, "status": "closed"})
        assert lines == ["PregnancyRegistration: close_reason is required when status is closed"]

    def test_blood_pressure_text_and_order(self) -> None:
        """`112/72` is accepted; a swapped pair is refused."""
        record = make(PregnancyRegistration, {**REGISTRATION, "blood_pressure": "112/72"})
        assert record.blood_pressure is not None
        assert record.blood_pressure.diastolic.value == 72
        lines = errors_of("PregnancyRegistration", {**REGISTRATION, "blood_pressure": "72/112"})
        assert lines == [
            "PregnancyRegistration.blood_pressure: diastolic 112 mmHg is not below systolic "
            "72 mmHg (swapped?)"
        ]


VISIT = {
    "record_id": "mch:HIS:FY01:JC2024050200077",
    "person": MOTHER,
    "source": SOURCE,
    "encounter": {"visit_number": "MZ2024050200207", "patient_class": "O",
                  "department": "产科门诊", "facility": "FY01", "attending": "D1023^张敏"},
    "visit_date": "2024-05-02",
    "gestational_age": {"weeks": 16, "days": 3},
    "weight": {"value": 54.0, "unit": "kg"},
    "blood_pressure": {"systolic": 110, "diastolic": 70},
    "fundal_height": {"value": 14, "unit": "cm"},
    "abdominal_circumference": {"value": 82, "unit": "cm"},
    "fetal_heart_rate": {"value": 152, "unit": "次/分"},
    "urine_protein": "阴性（-）",
    "hb": {"value": 116, "unit": "g/L"},
    "risk": {"colour": ["G^绿色^99FYRISK"]},
    "next_visit_date": "2024-05-30",
    "notes": ["孕期营养及体重管理指导；补充叶酸、钙剂。"],
}  # fmt: skip


class TestPrenatalVisit:
    def test_sample_006_is_valid(self) -> None:
        """The 16+3 visit validates; 次/分 is stored as /min."""
        record = make(PrenatalVisit, VISIT)
        assert isinstance(record, PrenatalVisit)
        assert record.fetal_heart_rate is not None and record.fetal_heart_rate.unit == "/min"
        assert record.urine_protein is not None and record.urine_protein.display == "阴性（-）"
        assert record.encounter is not None and record.encounter.attending is not None
        assert record.encounter.attending.name == "张敏"
        assert record.flags == []

    def test_visit_date_in_the_future(self) -> None:
        """The brief's example: a visit in 2031 is one line naming the field."""
        lines = errors_of("PrenatalVisit", {**VISIT, "visit_date": "2031-01-01", "next_visit_date": None})
        assert lines == ["PrenatalVisit.visit_date: 2031-01-01 is in the future"]

    def test_a_day_of_clock_skew_is_allowed(self) -> None:
        """Tomorrow is tolerated (sender clocks drift); the next appointment may be later."""
        record = make(PrenatalVisit, {**VISIT, "visit_date": future(1), "next_visit_date": future(29)})
        assert record.visit_date.isoformat() == future(1)

    def test_visit_date_is_required(self) -> None:
        """A visit without a date cannot be placed on the schedule."""
        data = {k: v for k, v in VISIT.items() if k != "visit_date"}
        assert errors_of("PrenatalVisit", data) == ["PrenatalVisit.visit_date: is required but missing"]

    def test_next_visit_before_visit(self) -> None:
        """An appointment before the visit itself is refused."""
        lines = errors_of("PrenatalVisit", {**VISIT, "next_visit_date": "2024-04-01"})
        assert lines == ["PrenatalVisit.next_visit_date: 2024-04-01 is before the visit date 2024-05-02"]

    def test_known_units_are_converted_with_the_sent_value_kept(self) -> None:
        """54000 g is 54 kg, Hb 11.6 g/dL is 116 g/L; the form's value and unit stay beside them."""
        data = {**VISIT, "weight": {"value": 54000, "unit": "g"}, "hb": {"value": "11.6", "unit": "g/dl"}}
        record = make(PrenatalVisit, data)
        assert record.weight is not None and record.hb is not None
        assert (record.weight.value, record.weight.unit, record.weight.original_unit) == (54, "kg", "g")
        assert (record.hb.value, record.hb.unit, record.hb.original_value) == (116, "g/L", 11.6)
        assert make(
            PrenatalVisit, {**VISIT, "hb": {"value": 116, "unit": "克/升"}}
        ).hb == record.hb.model_copy(update={"original_value": None, "original_unit": None})
        assert record.flags == []

    def test_an_unknown_or_irreconcilable_unit_is_flagged_not_refused(self) -> None:
        """A unit no table knows, or one of another kind (mmol/L for Hb), keeps the record."""
        record = make(PrenatalVisit, {**VISIT, "hb": {"value": 7.2, "unit": "mmol/L"}, "weight": "54"})
        assert record.hb is not None and (record.hb.value, record.hb.unit) == (7.2, "mmol/L")
        assert [(f.code, f.field) for f in record.flags] == [("quantity_unit_mismatch", "hb")]
        record = make(PrenatalVisit, {**VISIT, "weight": {"value": 108, "unit": "lb"}})
        assert [(f.code, f.field) for f in record.flags] == [("quantity_unit_unknown", "weight")]

    def test_vendor_spellings_and_bare_numbers(self) -> None:
        """公斤 means kg and a bare number is taken in the field's unit."""
        record = make(PrenatalVisit, {**VISIT, "weight": {"value": "54", "unit": "公斤"}, "hb": 116})
        assert record.weight is not None and (record.weight.value, record.weight.unit) == (54, "kg")
        assert record.hb is not None and record.hb.unit == "g/L"

    def test_implausible_values_name_the_range(self) -> None:
        """Fetal heart rate 520 is a typing error caught with the plausible range."""
        lines = errors_of("PrenatalVisit", {**VISIT, "fetal_heart_rate": 520})
        assert lines == [
            "PrenatalVisit.fetal_heart_rate: 520 /min is outside the plausible fetal heart rate 50–240 /min"
        ]

    def test_naive_times_are_refused(self) -> None:
        """A time without offset is refused so no one guesses its time zone later."""
        lines = errors_of(
            "PrenatalVisit", {**VISIT, "source": {**SOURCE, "event_time": "2024-05-02T10:10:00"}}
        )
        assert lines == [
            "PrenatalVisit.source.event_time: '2024-05-02T10:10:00' has no UTC offset; times must "
            "carry one (the hl7_datetime converter adds +08:00)"
        ]

    def test_unknown_field_is_reported(self) -> None:
        """A misspelt target in a mapping fails instead of dropping data."""
        lines = errors_of("PrenatalVisit", {**VISIT, "fundal_hieght": 14})
        assert lines == [
            "PrenatalVisit.fundal_hieght: is not a field of this record (check the target name in the mapping)"
        ]

    def test_several_problems_one_line_each(self) -> None:
        """Every problem gets its own line, in field order."""
        lines = errors_of(
            "PrenatalVisit", {**VISIT, "visit_date": "2031-01-01", "weight": 500, "next_visit_date": None}
        )
        assert lines == [
            "PrenatalVisit.visit_date: 2031-01-01 is in the future",
            "PrenatalVisit.weight: 500 kg is outside the plausible body weight 25–250 kg",
        ]


# --------------------------------------------------------------------------- five-colour risk


class TestRisk:
    def test_purple_on_top_of_yellow(self) -> None:
        """罗美玲's repeating CE Y~P is yellow with the purple flag (sample 022)."""
        record = make(
            RiskAssessment,
            {
                "record_id": "risk:HIS:FY02:JC2024082000405",
                "person": {"id_card": "500230199905090468", "name": "罗美玲", "sex": "2"},
                "assessment_date": "2024-08-20",
                "gestational_age": "28+5",
                "colour": ["Y^黄色^99FYRISK", "P^紫色^99FYRISK"],
                "factors": "BMI＞25；妊娠合并梅毒（TPPA阳性，TRUST 1:8）",
                "assessor": "D5012^向红",
            },
        )
        assert isinstance(record, RiskAssessment)
        assert (record.colour, record.purple, record.method) == ("yellow", True, "manual")
        assert [f.description for f in record.factors] == [
            "BMI＞25",
            "妊娠合并梅毒（TPPA阳性，TRUST 1:8）",
        ]
        assert record.needs_case_management

    def test_highest_colour_applies(self) -> None:
        """Yellow and orange factors give orange; purple alone stays a flag."""
        assert highest_colour(["yellow", "orange", "green"]) == "orange"
        grade = RiskGrade.model_validate({"colour": ["黄色", "O", "紫色"]})
        assert (grade.colour, grade.purple) == ("orange", True)
        only_purple = RiskGrade.model_validate({"colour": "P"})
        assert (only_purple.colour, only_purple.purple) == (None, True)

    def test_green_alone_needs_no_case_management(self) -> None:
        """Green and yellow women are not in case management; red is."""
        assert not RiskGrade.model_validate({"colour": "G"}).needs_case_management
        assert RiskGrade.model_validate({"colour": "红色"}).needs_case_management

    def test_suggestion_with_source_observation(self) -> None:
        """An engine suggestion keeps the factor's colour and the observation behind it."""
        record = make(RiskAssessment,
            {
                "record_id": "risk:suggested:1",
                "assessment_date": "2024-09-05",
                "colour": "yellow",
                "method": "suggested",
                "rule_set": "国卫办妇幼发〔2017〕35号",
                "factors": [
                    {"description": "Hb 60–110 g/L", "colour": "Y",
                     "source_observation": {"record_type": "LabResult", "record_id": "lab:LIS:20:240905007",
                                            "code": "HGB", "name": "血红蛋白", "value": 96}}
                ],
            },
        )  # fmt: skip
        assert isinstance(record, RiskAssessment)
        factor = record.factors[0]
        assert factor.colour == "yellow"
        assert factor.source_observation is not None and factor.source_observation.value == "96"

    def test_unknown_colour_is_refused(self) -> None:
        """A colour outside the five is an error listing them."""
        lines = errors_of(
            "RiskAssessment", {"record_id": "r", "assessment_date": "2024-08-20", "colour": "蓝色"}
        )
        assert lines == [
            "RiskAssessment: '蓝色' is not a five-colour risk grade (green/绿色 G, yellow/黄色 Y, "
            "orange/橙色 O, red/红色 R, purple/紫色 P)"
        ]

    def test_a_grading_needs_a_grade(self) -> None:
        """No colour and no purple is not an assessment."""
        lines = errors_of("RiskAssessment", {"record_id": "r", "assessment_date": "2024-08-20"})
        assert lines == ["RiskAssessment: colour is missing and purple is not set; no grade given"]


# --------------------------------------------------------------------------- lab


LAB = {
    "record_id": "lab:LIS:10:2403210318",
    "person": MOTHER,
    "placer_order_id": "JC2024032100022",
    "filler_order_id": "2403210318",
    "order": "BLD01^血常规^L",
    "specimen": "BLD^全血",
    "collected_at": "2024-03-21T09:20:00+08:00",
    "reported_at": "2024-03-21T11:35:00+08:00",
    "report_status": "F",
    "lab": "LIS^10",
    "verifier": "D2011&王伟",
    "observations": [
        {"set_id": 1, "value_type": "NM", "code": "WBC", "name": "白细胞计数", "coding_system": "L",
         "value": "7.85", "unit": "10^9/L", "reference_range": "3.5-9.5", "abnormal_flag": "N",
         "status": "F", "observed_at": "2024-03-21T11:20:00+08:00"},
        {"set_id": 5, "value_type": "NM", "code": "HGB", "name": "血红蛋白", "coding_system": "L",
         "standard_code": {"code": "718-7", "system": "LN", "display": "Hemoglobin"},
         "value": 118, "unit": "g/L", "reference_range": "115-150", "abnormal_flag": "N", "status": "F"},
        {"set_id": 10, "value_type": "NM", "code": "PLT", "name": "血小板计数", "value": "215",
         "unit": "10*9/L", "reference_range": "125-350", "abnormal_flag": "N", "status": "F"},
    ],
}  # fmt: skip


def lab_with(*observations: dict[str, Any]) -> dict[str, Any]:
    return {**LAB, "observations": list(observations)}


class TestLabResult:
    def test_blood_routine_sample_is_valid(self) -> None:
        """Sample 003's blood routine validates with typed numbers and parsed ranges."""
        record = make(LabResult, LAB)
        assert isinstance(record, LabResult)
        assert record.flags == []
        wbc, hgb, _ = record.observations
        assert (wbc.value_type, wbc.value, wbc.value_type_sent) == ("number", 7.85, "NM")
        assert wbc.reference_range is not None
        assert (wbc.reference_range.low, wbc.reference_range.high) == (3.5, 9.5)
        assert hgb.standard_code is not None and hgb.standard_code.code == "718-7"
        assert record.order is not None and record.order.display == "血常规"
        assert record.verifier is not None and record.verifier.name == "王伟"

    def test_text_and_coded_values(self) -> None:
        """ST stays text (阴性（-）) and CE becomes a coded value (ABO A型, sample 031)."""
        record = make(LabResult,
            lab_with(
                {"value_type": "ST", "code": "TPAB", "name": "梅毒螺旋体抗体（TP-ELISA）",
                 "value": "阴性（-）", "reference_range": "阴性", "abnormal_flag": "N", "status": "F"},
                {"value_type": "CE", "code": "ABO", "name": "ABO血型", "value": "A^A型^L", "status": "F"},
                {"value_type": "CE", "code": "RHD", "value": {"code": "POS", "display": "阳性", "system": "L"}},
                {"value_type": "ST", "code": "USG", "value": "1.020"},
            ),
        )  # fmt: skip
        tp, abo, rhd, usg = record.observations
        assert (tp.value_type, tp.value) == ("text", "阴性（-）")
        assert tp.reference_range is not None and tp.reference_range.text == "阴性"
        assert abo.value_type == "coded" and getattr(abo.value, "display", None) == "A型"
        assert getattr(rhd.value, "code", None) == "POS"
        assert usg.value == "1.020"

    def test_comparator_numbers(self) -> None:
        """`<0.05` in an NM field is the number 0.05 with comparator <."""
        record = make(
            LabResult, lab_with({"value_type": "NM", "code": "HBSAG", "value": "<0.05", "unit": "IU/mL"})
        )
        obs = record.observations[0]
        assert (obs.value, obs.comparator, obs.value_type) == (0.05, "<", "number")

    @pytest.mark.parametrize(
        ("text", "low", "high"), [("<5.1", None, 5.1), (">1.00", 1.0, None), ("3.5～9.5", 3.5, 9.5)]
    )
    def test_reference_range_bounds(self, text: str, low: float | None, high: float | None) -> None:
        """One-sided and full-width-tilde ranges give their bounds and keep the text."""
        record = make(
            LabResult, lab_with({"value_type": "NM", "code": "X", "value": 1, "reference_range": text})
        )
        rr = record.observations[0].reference_range
        assert rr is not None and (rr.low, rr.high, rr.text) == (low, high, text)

    def test_non_number_in_number_field_is_kept_and_flagged(self) -> None:
        """A lab writing 阴性 in an NM field loses nothing: text value plus a flag."""
        record = make(
            LabResult, lab_with({"value_type": "NM", "code": "UPRO", "name": "尿蛋白", "value": "阴性"})
        )
        obs = record.observations[0]
        assert (obs.value_type, obs.value) == ("text", "阴性")
        assert [(f.code, f.field) for f in record.flags] == [
            ("observation_not_number", "observations[0].value")
        ]

    @pytest.mark.parametrize(
        "unit", ["10^9/L", "10*9/L", "μmol/L", "umol/L", "µmol/L", "mIU/L", "S/CO", "次/分", "%"]
    )
    def test_vendor_units_are_known(self, unit: str) -> None:
        """The unit spellings seen in the samples raise no flag."""
        assert is_known_lab_unit(unit)

    def test_unknown_unit_is_a_flag_not_an_error(self) -> None:
        """Labs send anything: an unknown unit keeps the result and flags the unit."""
        record = make(
            LabResult,
            lab_with(
                {"value_type": "NM", "code": "FER", "name": "血清铁蛋白", "value": 12.3, "unit": "ug/dl/x"}
            ),
        )
        assert [(f.code, f.field, f.message) for f in record.flags] == [
            ("lab_unit_unknown", "observations[0].unit",
             "血清铁蛋白 unit 'ug/dl/x' is not a known unit; check the value's scale")
        ]  # fmt: skip

    def test_arrows_are_abnormal_flags(self) -> None:
        """↑ is read as H; a flag outside HL7 0078 is kept and flagged."""
        record = make(
            LabResult,
            lab_with(
                {"code": "TBA", "value": 15.2, "abnormal_flag": "↑"},
                {"code": "ALT", "value": 62, "abnormal_flag": "偏高"},
            ),
        )
        assert record.observations[0].abnormal_flag == "H"
        assert [f.code for f in record.flags] == ["abnormal_flag_unknown"]

    def test_correction_status(self) -> None:
        """A corrected result (sample 009, OBX-11 C) is accepted; letters outside table 0085 are not."""
        record = make(LabResult, {**LAB, "report_status": "C"})
        assert record.report_status == "C"
        lines = errors_of("LabResult", lab_with({"code": "GLU2", "value": 8.2, "status": "Z"}))
        assert lines == [
            "LabResult.observations[0].status: 'Z' is not a result status (HL7 table 0085: F final, "
            "C corrected, P preliminary, X cannot be obtained, R, S, I, O, W, D, N, U, A)"
        ]

    def test_at_least_one_observation(self) -> None:
        """A lab report with no observations is refused, with or without the list."""
        assert errors_of("LabResult", lab_with()) == [
            "LabResult.observations: no observations given; a LabResult needs at least one"
        ]
        data = {k: v for k, v in LAB.items() if k != "observations"}
        assert errors_of("LabResult", data) == ["LabResult.observations: is required but missing"]

    def test_unknown_value_type(self) -> None:
        """An OBX-2 the model does not know is named."""
        lines = errors_of("LabResult", lab_with({"code": "X", "value": "1", "value_type": "ZZ"}))
        assert lines == [
            "LabResult.observations[0]: value_type 'ZZ' is not number, text, coded or an HL7 OBX-2 type"
        ]


# --------------------------------------------------------------------------- imaging


NT_REPORT = {
    "record_id": "pacs:PACS:FY01:US202404050031",
    "person": MOTHER,
    "filler_order_id": "US202404050031",
    "exam": "US0301^NT超声^99FYPACS",
    "modality": "US",
    "exam_time": "2024-04-05T09:40:00+08:00",
    "gestational_age": "12+4",
    "findings": "子宫增大，宫内可见一胎儿，胎儿头臀长（CRL）约6.21cm。\n胎心搏动可见，胎心率约158次/分，律齐。",
    "impression": "宫内早孕，单活胎，超声孕周约12周+4天；NT值在正常范围",
    "measurements": {
        "crl": {"value": 62.1, "unit": "mm"},
        "nt": {"value": 1.4, "unit": "mm"},
        "fetal_heart_rate": {"value": 158, "unit": "次/分"},
        "nasal_bone": "可见",
    },
    "reporter": "D3101&李娜",
}


class TestImagingReport:
    def test_nt_sample_is_valid(self) -> None:
        """Sample 005's NT scan keeps its line breaks and structured CRL/NT."""
        record = make(ImagingReport, NT_REPORT)
        assert isinstance(record, ImagingReport)
        assert record.findings is not None and "\n" in record.findings
        [fetus] = record.measurements
        assert fetus.nt is not None and (fetus.nt.value, fetus.nt.unit) == (1.4, "mm")
        assert record.critical is False

    def test_biometry_in_cm_is_accepted(self) -> None:
        """Sample 007 reports BPD/HC/AC/FL in cm and EFW in g; S/D has no unit."""
        record = make(ImagingReport,
            {**NT_REPORT, "measurements": [{"bpd": {"value": 5.4, "unit": "cm"}, "hc": {"value": 19.9, "unit": "cm"},
             "ac": {"value": 17.6, "unit": "cm"}, "fl": {"value": 3.9, "unit": "cm"},
             "efw": {"value": 485, "unit": "g"}, "afi": {"value": 13.6, "unit": "cm"},
             "umbilical_sd_ratio": 2.9, "placenta_position": "后壁", "placenta_grade": "0"}],
             "report_url": "http://pacs.fy01.example/report/US202406120147"},
        )  # fmt: skip
        assert record.measurements[0].bpd is not None
        assert record.measurements[0].bpd.unit == "cm"

    def test_nt_out_of_range(self) -> None:
        """NT 3 cm (30 mm) is outside the plausible range, checked across units."""
        lines = errors_of("ImagingReport", {**NT_REPORT, "measurements": {"nt": {"value": 3, "unit": "cm"}}})
        assert lines == ["ImagingReport.measurements[0].nt: 3 cm is outside the plausible NT 0.1–15 mm"]

    def test_empty_report_is_refused(self) -> None:
        """A report with no text, impression or values carries nothing."""
        data = {"record_id": "r", "exam": "NT超声"}
        assert errors_of("ImagingReport", data) == [
            "ImagingReport: findings, impression, measurements and observations are all empty; "
            "an ImagingReport needs at least one"
        ]


# --------------------------------------------------------------------------- birth


class TestBirth:
    def test_delivery_sample_is_valid(self) -> None:
        """Sample 010: vaginal delivery at 39+1, blood loss in mL, category derived."""
        record = make(
            DeliveryRecord,
            {
                "record_id": "mch:HIS:FY01:FM2024100800012",
                "person": MOTHER,
                "delivery_time": "2024-10-08T14:32:00+08:00",
                "gestational_age": "39+1",
                "mode": "1^阴道自然分娩^99FYDM",
                "fetal_position": "LOA",
                "blood_loss": {"value": 260, "unit": "mL"},
                "blood_loss_24h": {"value": 320, "unit": "ml"},
                "perineum": "Ⅰ度裂伤，已缝合",
                "placenta": "自然娩出，完整",
                "live_births": 1,
            },
        )
        assert isinstance(record, DeliveryRecord)
        assert record.mode_category == "vaginal"
        assert record.blood_loss_24h is not None and record.blood_loss_24h.unit == "mL"

    @pytest.mark.parametrize(
        ("mode", "category"), [("剖宫产", "caesarean"), ("阴道助产（产钳）", "assisted"), ("顺产", "vaginal")]
    )
    def test_delivery_mode_categories(self, mode: str, category: str) -> None:
        """Caesarean and assisted are recognised before plain vaginal."""
        record = make(
            DeliveryRecord, {"record_id": "d", "delivery_time": "2024-10-08T14:32:00+08:00", "mode": mode}
        )
        assert isinstance(record, DeliveryRecord) and record.mode_category == category

    def test_newborn_sample_is_valid(self) -> None:
        """Sample 012: 3250 g, Apgar 9/10, vaccines 已接种, mother linked."""
        record = make(
            NewbornRecord,
            {
                "record_id": "mch:HIS:FY01:FM2024100800013",
                "person": {"his_id": "0010031207", "his_system": "HIS", "name": "陈思雨之女", "sex": "2"},
                "mother": {"his_id": "0010023456", "id_card": MOTHER_ID},
                "birth_time": "2024-10-08T14:32:00+08:00",
                "gestational_age": "39+1",
                "sex": "2",
                "birth_weight": {"value": 3250, "unit": "g"},
                "birth_length": {"value": 50.0, "unit": "cm"},
                "head_circumference": 34.0,
                "chest_circumference": 33.0,
                "apgar_1min": 9,
                "apgar_5min": 10,
                "hep_b_vaccine": "已接种",
                "bcg_vaccine": "已接种",
            },
        )
        assert isinstance(record, NewbornRecord)
        assert record.hep_b_vaccine is True and record.flags == []
        assert record.mother is not None and record.mother.id_card_valid

    def test_birth_weight_range_and_unit(self) -> None:
        """8200 g is refused; 3.25 kg is stored as 3250 g with the sent value beside it."""
        base = {"record_id": "n", "birth_time": "2024-10-08T14:32:00+08:00"}
        assert errors_of("NewbornRecord", {**base, "birth_weight": {"value": 8200, "unit": "g"}}) == [
            "NewbornRecord.birth_weight: 8200 g is outside the plausible birth weight 300–7000 g"
        ]
        record = make(NewbornRecord, {**base, "birth_weight": {"value": 3.25, "unit": "kg"}})
        assert record.birth_weight is not None
        assert record.birth_weight.model_dump() == {
            "value": 3250,
            "unit": "g",
            "original_value": 3.25,
            "original_unit": "kg",
        }

    def test_apgar_range(self) -> None:
        """An Apgar score above 10 names the scale."""
        lines = errors_of(
            "NewbornRecord", {"record_id": "n", "birth_time": "2024-10-08T14:32:00+08:00", "apgar_5min": 13}
        )
        assert lines == ["NewbornRecord.apgar_5min: 13 is outside the plausible Apgar score 0–10"]

    def test_newborn_screening(self) -> None:
        """Heel-prick TSH with recall and a hearing refer on one ear validate."""
        record = make(NewbornScreening,
            {
                "record_id": "nbs:1",
                "person": {"his_id": "0010031207", "name": "李沐瑶"},
                "mother": {"id_card": MOTHER_ID},
                "sample_time": "2024-10-11T09:00:00+08:00",
                "metabolic": [
                    {"condition": "先天性甲状腺功能减低症",
                     "observation": {"code": "TSH", "value_type": "NM", "value": "12.5", "unit": "mIU/L"},
                     "result": "suspected"},
                    {"condition": "PKU", "observation": {"code": "PHE", "value": 62, "unit": "μmol/L"},
                     "result": "normal"},
                ],
                "hearing_method": "OAE",
                "hearing_left": "通过",
                "hearing_right": "未通过",
                "status": "recall",
            },
        )  # fmt: skip
        assert isinstance(record, NewbornScreening)
        assert record.metabolic[0].condition == "CH"
        assert (record.hearing_left, record.hearing_right) == ("pass", "refer")

    def test_empty_screening_is_refused(self) -> None:
        """A screening record needs a result or a status."""
        assert errors_of("NewbornScreening", {"record_id": "s"}) == [
            "NewbornScreening: metabolic, hearing_left, hearing_right and status are all empty; "
            "a NewbornScreening needs a result or a status"
        ]


# --------------------------------------------------------------------------- postpartum


class TestPostpartum:
    def test_42_day_check_sample_is_valid(self) -> None:
        """Sample 014: the 42-day check, findings as text, 已恢复 read as recovered."""
        record = make(
            PostpartumVisit,
            {
                "record_id": "mch:HIS:FY01:JC2024111900088",
                "person": MOTHER,
                "visit_kind": "MCH-PP42",
                "visit_date": "2024-11-19",
                "days_postpartum": 42,
                "blood_pressure": {"systolic": 116, "diastolic": 74},
                "weight": 56.3,
                "breasts": "未见异常",
                "lochia": "无",
                "uterus": "已复旧",
                "wound": "会阴伤口愈合良好",
                "mental_state": "未见异常",
                "classification": "1^已恢复^99FYPP",
                "guidance": "母乳喂养；避孕指导；产后盆底康复",
            },
        )
        assert isinstance(record, PostpartumVisit)
        assert record.visit_kind == "check_42d" and record.recovered is True
        assert record.breasts is not None and record.breasts.status == "normal"
        assert record.uterus is not None and (record.uterus.status, record.uterus.text) == (None, "已复旧")

    def test_home_visit_kind(self) -> None:
        """产后访视 is the postpartum home visit; an unknown kind is refused."""
        record = make(
            PostpartumVisit, {"record_id": "pp", "visit_kind": "产后访视", "visit_date": "2024-10-13"}
        )
        assert isinstance(record, PostpartumVisit) and record.visit_kind == "postpartum_visit"
        lines = errors_of(
            "PostpartumVisit", {"record_id": "pp", "visit_kind": "产后3天", "visit_date": "2024-10-13"}
        )
        assert lines == [
            "PostpartumVisit.visit_kind: '产后3天' is not a postpartum visit kind "
            "(postpartum_visit 产后访视 or check_42d 产后42天检查)"
        ]


# --------------------------------------------------------------------------- child


CHILD_CHECK = {
    "record_id": "mch:HIS:FY01:JC2025041000041",
    "person": DAUGHTER,
    "mother": {"his_id": "0010023456", "id_card": MOTHER_ID},
    "exam_date": "2025-04-10",
    "age_months": 6,
    "weight": {"value": 7.6, "unit": "kg"},
    "length_or_height": {"value": 66.8, "unit": "cm"},
    "head_circumference": {"value": 42.9, "unit": "cm"},
    "hb": {"value": 118, "unit": "g/L"},
    "teeth": 0,
    "fontanelle": "1.5×1.5cm",
    "hearing": "通过",
}


class TestChildHealthExam:
    def test_six_month_sample_is_valid(self) -> None:
        """Sample 015: 李沐瑶 at 6 months, measured lying, hearing passed."""
        record = make(ChildHealthExam, CHILD_CHECK)
        assert isinstance(record, ChildHealthExam)
        assert record.measurement_position == "recumbent"
        assert record.hearing == "pass" and record.flags == []

    def test_age_in_months_is_derived(self) -> None:
        """Without age_months the age comes from the birth date (2023-12-20 → 12 on 2024-12-23)."""
        record = make(ChildHealthExam,
            {"record_id": "c", "person": {"id_card": "500230202312200574", "sex": "1", "birth_date": "2023-12-20"},
             "exam_date": "2024-12-23", "length_or_height": 76.5, "development_screening": "通过"},
        )  # fmt: skip
        assert isinstance(record, ChildHealthExam)
        assert (record.age_months, record.development_screening) == (12, "pass")

    def test_age_range(self) -> None:
        """Children's checks end at 6 years: 90 months is refused."""
        assert errors_of("ChildHealthExam", {**CHILD_CHECK, "age_months": 90}) == [
            "ChildHealthExam.age_months: 90 is outside the plausible age in months 0–84"
        ]

    def test_age_disagreeing_with_birth_date_is_flagged(self) -> None:
        """A sent age 3 months off the birth date is flagged."""
        record = make(ChildHealthExam, {**CHILD_CHECK, "age_months": 9})
        assert "age_months_inconsistent" in [f.code for f in record.flags]

    def test_standing_at_six_months_is_flagged(self) -> None:
        """Height standing under 24 months is unusual and flagged."""
        record = make(ChildHealthExam, {**CHILD_CHECK, "measurement_position": "立位"})
        assert [f.code for f in record.flags] == ["measurement_position_unusual"]

    @pytest.mark.parametrize(("months_old", "position", "flagged"), [
        (24, "recumbent", False), (35, "recumbent", False), (30, "standing", False),
        (36, "recumbent", True), (23, "standing", True),
    ])  # fmt: skip
    def test_lying_until_3_years_is_usual(self, months_old: int, position: str, flagged: bool) -> None:
        """Chinese practice lies children down until 36 months; WHO stands them from 24."""
        record = make(ChildHealthExam, {**CHILD_CHECK, "person": None, "age_months": months_old,
                                        "measurement_position": position})  # fmt: skip
        assert ("measurement_position_unusual" in [f.code for f in record.flags]) is flagged

    @pytest.mark.parametrize(("months_old", "hb", "anaemia"), [
        (5, 90, None), (6, 109.9, True), (6, 110, False), (59, 109, True), (59, 110, False),
        (60, 114, True), (60, 115, False), (84, 114.5, True),
    ])  # fmt: skip
    def test_anaemia_by_who_cut_off_for_the_age(
        self, months_old: int, hb: float, anaemia: bool | None
    ) -> None:
        record = make(ChildHealthExam, {**CHILD_CHECK, "person": None, "age_months": months_old,
                                        "hb": {"value": hb, "unit": "g/L"}})  # fmt: skip
        assert isinstance(record, ChildHealthExam)
        assert record.anaemia is anaemia

    def test_anaemia_needs_hb_in_g_per_l(self) -> None:
        without = make(ChildHealthExam, {**CHILD_CHECK, "hb": None})
        mmol = make(ChildHealthExam, {**CHILD_CHECK, "hb": {"value": 6.2, "unit": "mmol/L"}})
        g_dl = make(ChildHealthExam, {**CHILD_CHECK, "hb": {"value": 10.5, "unit": "g/dL"}})
        assert isinstance(without, ChildHealthExam) and without.anaemia is None
        assert isinstance(mmol, ChildHealthExam) and mmol.anaemia is None
        assert isinstance(g_dl, ChildHealthExam) and g_dl.anaemia is True  # 105 g/L

    def test_anaemia_sent_by_a_hospital_is_replaced(self) -> None:
        record = make(ChildHealthExam, {**CHILD_CHECK, "anaemia": True})
        assert isinstance(record, ChildHealthExam) and record.anaemia is False  # 118 g/L at 6 months

    @pytest.mark.parametrize(("months_old", "hb", "anaemia"), [
        (143, 114.9, True), (143, 115, False), (144, 119.9, True), (144, 120, False),
        (179, 119, True), (180, 100, None), (None, 100, None),
    ])  # fmt: skip
    def test_anaemia_cut_offs_to_14_years(
        self, months_old: int | None, hb: float, anaemia: bool | None
    ) -> None:
        """The record ends at 84 months; the rule carries WHO's cut-offs to 14 years."""
        assert child_anaemia(hb, months_old) is anaemia

    def test_child_weight_in_grams_or_jin_and_length_in_mm_are_converted(self) -> None:
        """7600 g and 15.2 斤 are 7.6 kg, 668 mm is 66.8 cm; the sent values are kept."""
        for sent in ({"value": 7600, "unit": "g"}, {"value": 15.2, "unit": "斤"}):
            data = {**CHILD_CHECK, "weight": sent, "length_or_height": {"value": 668, "unit": "毫米"}}
            record = make(ChildHealthExam, data)
            assert record.weight is not None and record.length_or_height is not None
            assert (record.weight.value, record.weight.unit) == (7.6, "kg")
            assert (record.weight.original_value, record.weight.original_unit) == (
                sent["value"],
                sent["unit"],
            )
            assert (record.length_or_height.value, record.length_or_height.original_unit) == (66.8, "毫米")

    def test_growth_assessment_shape(self) -> None:
        """Derived z-scores and labels in the growth calculator's shape are accepted."""
        growth = {
            "standard": "WHO2006", "sex": "2", "age_days": 184, "length_cm_used": 66.8,
            "length_adjustment_cm": 0.0, "bmi": 17.03, "wflh_indicator": "wfl",
            "wfa_z": 0.02, "lhfa_z": 0.41, "wflh_z": -0.3, "bfa_z": -0.31, "hcfa_z": 0.25,
            "labels": [], "flags": [], "not_assessed": {},
        }  # fmt: skip
        record = make(ChildHealthExam, {**CHILD_CHECK, "growth": growth})
        assert isinstance(record, ChildHealthExam)
        assert record.growth is not None and record.growth.lhfa_z == 0.41
        stunted = {**growth, "lhfa_z": -2.4,
                   "labels": [{"code": "stunting", "display": "生长迟缓", "severity": "moderate",
                               "indicator": "lhfa_z", "z": -2.4}]}  # fmt: skip
        record = make(ChildHealthExam, {**CHILD_CHECK, "growth": stunted})
        assert isinstance(record, ChildHealthExam) and record.growth is not None
        assert record.growth.labels[0].code == "stunting"

    def test_exam_before_birth_is_refused(self) -> None:
        """A check dated before the child was born cannot be right."""
        lines = errors_of("ChildHealthExam", {**CHILD_CHECK, "exam_date": "2024-01-10", "age_months": None})
        assert lines == ["ChildHealthExam: exam_date 2024-01-10 is before the child's birth date 2024-10-08"]


# --------------------------------------------------------------------------- premarital


class TestPremaritalExam:
    def test_female_sample_is_valid(self) -> None:
        """Sample 024: 何静 with partner 刘洋, screens negative, standard opinion derived."""
        record = make(PremaritalExam,
            {
                "record_id": "mch:HIS:FY01:HJ2024090300017",
                "person": {"id_card": "500112199701300621", "name": "何静", "sex": "2",
                           "birth_date": "1997-01-30"},
                "partner": {"id_card": MALE_ID, "name": "刘洋"},
                "exam_date": "2024-09-03",
                "height": 162.0, "weight": 54.0, "blood_pressure": "108/70", "hb": 128,
                "syphilis": "阴性", "hiv": "阴性", "hbsag": "阴性", "chest_xray": "未见异常",
                "conclusion": "1^未发现医学上不宜结婚的情形^99FYPME",
            },
        )  # fmt: skip
        assert isinstance(record, PremaritalExam)
        assert record.conclusion_category == "no_contraindication"
        assert record.flags == []

    def test_partner_bad_id_is_flagged(self) -> None:
        """A wrong partner ID card is flagged under partner.id_card."""
        record = make(
            PremaritalExam,
            {"record_id": "pme", "exam_date": "2024-09-03", "partner": {"id_card": BAD_CHECK_ID}},
        )
        assert [(f.code, f.field) for f in record.flags] == [("id_card_check_digit", "partner.id_card")]


# --------------------------------------------------------------------------- registry


class TestRegistry:
    def test_every_record_type_is_registered_under_its_name(self) -> None:
        """RECORD_TYPES holds the thirteen types, keyed by their record_type."""
        assert sorted(RECORD_TYPES) == sorted([
            "Person", "PremaritalExam", "PregnancyRegistration", "PrenatalVisit", "RiskAssessment",
            "LabResult", "ImagingReport", "DeliveryRecord", "NewbornRecord", "PostpartumVisit",
            "ChildHealthExam", "NewbornScreening", "PmtctCase",
        ])  # fmt: skip
        for name, model in RECORD_TYPES.items():
            assert model.model_fields["record_type"].default == name

    def test_unknown_record_type(self) -> None:
        """A mapping naming a type that does not exist gets the list of known types."""
        with pytest.raises(UnknownRecordType, match="unknown record type 'Baby'"):
            validate_record("Baby", {})

    def test_record_type_in_data_must_agree(self) -> None:
        """Data saying it is another type is refused."""
        assert errors_of("LabResult", {**LAB, "record_type": "Person"}) == [
            "LabResult.record_type: 'Person' is not valid, expected 'LabResult'"
        ]

    def test_future_schema_version_is_refused(self) -> None:
        """A record from a newer engine version is not silently accepted."""
        assert errors_of("LabResult", {**LAB, "schema_version": 2}) == [
            "LabResult.schema_version: schema_version 2 is not known to this engine (it understands 1 to 1)"
        ]

    def test_every_description_has_a_chinese_term(self) -> None:
        """Chinese interface engineers read the schema: every field says its Chinese name."""
        missing: list[str] = []
        seen: set[type[BaseModel]] = set()

        def walk(model: type[BaseModel]) -> None:
            if model in seen:
                return
            seen.add(model)
            fields: dict[str, Any] = {**model.model_fields, **model.model_computed_fields}
            for name, info in fields.items():
                if not re.search(r"[\u4e00-\u9fff]", info.description or ""):
                    missing.append(f"{model.__name__}.{name}")
            for info in model.model_fields.values():
                stack: list[Any] = [info.annotation]
                while stack:
                    tp = stack.pop()
                    if isinstance(tp, type) and issubclass(tp, BaseModel):
                        walk(tp)
                    stack.extend(typing.get_args(tp))

        for model in RECORD_TYPES.values():
            walk(model)
        assert missing == []

    def test_de_ids_are_kept_in_descriptions(self) -> None:
        """WS 363 data-element ids from MCH-DOMAIN appear in the field descriptions."""
        ref = RECORD_TYPES["Person"].model_json_schema()["$defs"]["PersonRef"]["properties"]
        assert "DE02.01.030.00" in ref["id_card"]["description"]
        reg = PregnancyRegistration.model_fields
        assert "DE02.10.051.00" in (reg["lmp"].description or "")
        assert "DE04.10.019.00" in (NewbornRecord.model_fields["birth_weight"].description or "")

    def test_all_records_share_the_base(self) -> None:
        """Every record has identity, provenance and flags from Record."""
        for model in RECORD_TYPES.values():
            assert issubclass(model, Record)
            assert {"record_id", "person", "mother", "source", "flags"} <= set(model.model_fields)
