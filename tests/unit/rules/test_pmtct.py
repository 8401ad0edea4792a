"""PMTCT follow-up cases over a woman's records, with the shipped schedule (mappings/rules/pmtct.yaml).

Histories are built in memory from real record payloads: each record is validated by its
model and dumped as the store keeps it, so the rules see exactly what they will see there.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from core.errors import ConfigError, ConfigErrors
from core.yaml_lines import problems_of
from transforms.decode import decode
from transforms.hl7v2 import Message
from transforms.mapping import load_mapping
from transforms.records import PmtctCase, validate_record
from transforms.rules.history import History, StoredRecord
from transforms.rules.pmtct import load_pmtct_schedule, pmtct_cases
from transforms.validate import canonical

REPO = Path(__file__).resolve().parents[3]
SCHEDULE = load_pmtct_schedule(REPO / "mappings" / "rules" / "pmtct.yaml")
SAMPLE_020 = REPO / "mappings" / "lis" / "samples" / "020_ORU-R01_gbk__lis-syphilis-positive-msh18-empty.hl7"

MOTHER = {"id_card": "500230199905090468", "name": "罗美玲", "sex": "2", "birth_date": "1999-05-09"}
BABY = {"his_id": "NB0001", "his_system": "HIS", "birth_certificate_no": "S500230001", "sex": "1"}


def stored(record_type: str, **data: Any) -> StoredRecord:
    """A record as the store keeps it: validated by its model, dumped as canonical JSON."""
    payload = validate_record(record_type, data).model_dump(mode="json", exclude_none=True)
    return StoredRecord.of(payload)


def registration(day: str = "2024-03-01", ga: str | None = "10+0", **extra: Any) -> StoredRecord:
    fields = {"gestational_age": ga} if ga else {}
    return stored(
        "PregnancyRegistration", record_id="reg:1", person=MOTHER, registration_date=day, **fields, **extra
    )


def lab(record_id: str, day: str, code: str, value: str, status: str = "F") -> StoredRecord:
    obs = {"code": code, "name": code, "value_type": "text", "value": value, "status": status}
    return stored(
        "LabResult",
        record_id=record_id,
        person=MOTHER,
        reported_at=f"{day}T10:00:00+08:00",
        report_status=status,
        observations=[obs],
    )


def delivery(when: str = "2024-09-20T08:00:00+08:00") -> StoredRecord:
    return stored(
        "DeliveryRecord", record_id="del:1", person=MOTHER, delivery_time=when, gestational_age="39+1"
    )


def newborn(when: str = "2024-09-20T08:00:00+08:00", **extra: Any) -> StoredRecord:
    return stored("NewbornRecord", record_id="nb:1", person=BABY, mother=MOTHER, birth_time=when, **extra)


def child_lab(record_id: str, day: str, code: str, value: str = "阴性") -> StoredRecord:
    obs = {"code": code, "value_type": "text", "value": value, "status": "F"}
    return stored(
        "LabResult",
        record_id=record_id,
        person=BABY,
        reported_at=f"{day}T10:00:00+08:00",
        observations=[obs],
    )


def child(*records: StoredRecord) -> History:
    return History("his:HIS:NB0001", {}, records)


def woman(*records: StoredRecord, children: tuple[History, ...] = ()) -> History:
    return History("id_card:500230199905090468", {}, records, children)


def only(cases: list[dict[str, Any]], infection: str) -> dict[str, Any]:
    [case] = [c for c in cases if c["infection"] == infection]
    return case


def items(case: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {i["id"]: i for i in case["items"]}


# --------------------------------------------------------------------------- opening


@pytest.mark.parametrize(
    ("code", "value", "infection"),
    [("HIVAB", "阳性", "hiv"), ("TPPA", "阳性", "syphilis"), ("RPR", "阳性 1:4", "syphilis"),
     ("HBSAGQ", "阳性", "hbv"), ("HBSAG", "反应性", "hbv")],
)  # fmt: skip
def test_a_positive_result_of_a_registered_woman_opens_a_case(code: str, value: str, infection: str) -> None:
    """Each infection's test opens its case, open, with the observation that opened it."""
    cases = pmtct_cases(
        woman(registration(), lab("lab:1", "2024-03-02", code, value)), SCHEDULE, date(2024, 3, 5)
    )
    assert [c["infection"] for c in cases] == [infection]
    case = cases[0]
    assert case["status"] == "open"
    assert case["opened_on"] == "2024-03-02"
    assert case["opened_by"]["record_id"] == "lab:1" and case["opened_by"]["code"] == code
    assert case["person"]["id_card"] == MOTHER["id_card"]
    assert case["audience"] == "pmtct_officer"
    assert PmtctCase.model_validate(case).infection == infection


def test_the_shipped_syphilis_sample_through_the_real_mapping_opens_a_syphilis_case() -> None:
    """LIS sample 020 (GBK, MSH-18 empty): TPPA and TRUST reactive, HIV and HBsAg negative."""
    mapping = load_mapping(REPO / "mappings" / "lis" / "oru_r01.yaml")
    message = Message(decode(SAMPLE_020.read_bytes(), "gbk").replace("\r\n", "\r").replace("\n", "\r"))
    [record] = mapping.apply(message)
    result = StoredRecord.of(canonical(record.record_type, record.record_id, record.record))
    reg = stored(
        "PregnancyRegistration",
        record_id="reg:020",
        person=MOTHER,
        registration_date="2024-08-12",
        gestational_age="8+3",
    )
    cases = pmtct_cases(woman(reg, result), SCHEDULE, date(2024, 8, 13))
    assert [(c["infection"], c["status"]) for c in cases] == [("syphilis", "open")]
    assert cases[0]["opened_by"] == {
        "record_type": "LabResult", "record_id": "lab:LIS:20:240812031", "code": "TPPA",
        "name": "梅毒螺旋体抗体（TPPA）", "value": "阳性",
    }  # fmt: skip
    assert cases[0]["person"]["name"] == "罗美玲"


def test_a_negative_result_opens_nothing() -> None:
    records = woman(
        registration(),
        lab("lab:1", "2024-03-02", "HIVAB", "阴性"),
        lab("lab:2", "2024-03-02", "TPPA", "无反应"),
    )
    assert pmtct_cases(records, SCHEDULE, date(2024, 3, 5)) == []


def test_no_case_for_a_woman_neither_registered_nor_delivered() -> None:
    """A positive premarital or general check is not a PMTCT case."""
    assert pmtct_cases(woman(lab("lab:1", "2024-03-02", "HIVAB", "阳性")), SCHEDULE, date(2024, 3, 5)) == []


def test_a_result_outside_the_episode_opens_nothing() -> None:
    """Registered at 10 weeks on 1 March: a result a year before is not in this pregnancy."""
    history = woman(registration(), lab("lab:1", "2023-01-10", "HIVAB", "阳性"))
    assert pmtct_cases(history, SCHEDULE, date(2024, 3, 5)) == []


def test_a_mother_within_the_follow_up_period_after_delivery_gets_a_case() -> None:
    """No registration, delivered on 20 Sep: a positive on day 30 opens, on day 60 does not."""
    inside = woman(delivery(), lab("lab:1", "2024-10-20", "HBSAGQ", "阳性"))
    outside = woman(delivery(), lab("lab:1", "2024-11-19", "HBSAGQ", "阳性"))
    assert [c["infection"] for c in pmtct_cases(inside, SCHEDULE, date(2024, 10, 21))] == ["hbv"]
    assert pmtct_cases(outside, SCHEDULE, date(2024, 11, 20)) == []


def test_the_episode_starts_at_the_registration_minus_gestational_age_or_13_weeks() -> None:
    """The record id is stable per person, infection and episode start."""
    with_ga = pmtct_cases(
        woman(registration(ga="10+0"), lab("l", "2024-03-02", "HIVAB", "阳性")), SCHEDULE, date(2024, 3, 5)
    )
    without = pmtct_cases(
        woman(registration(ga=None), lab("l", "2024-03-02", "HIVAB", "阳性")), SCHEDULE, date(2024, 3, 5)
    )
    with_lmp = pmtct_cases(
        woman(registration(lmp="2023-12-18"), lab("l", "2024-03-02", "HIVAB", "阳性")),
        SCHEDULE,
        date(2024, 3, 5),
    )
    assert with_ga[0]["episode_start"] == "2023-12-22"
    assert without[0]["episode_start"] == "2023-12-01"
    assert with_lmp[0]["episode_start"] == "2023-12-18"
    assert with_ga[0]["record_id"].endswith(":hiv:2023-12-22")
    assert MOTHER["id_card"] not in with_ga[0]["record_id"]  # ids reach logs; the key may be the ID card


# --------------------------------------------------------------------------- provisional, corrected


def test_a_preliminary_reactive_result_opens_provisional_and_the_final_makes_it_open() -> None:
    preliminary = woman(registration(), lab("lab:1", "2024-03-02", "HIVAB", "阳性", status="P"))
    [case] = pmtct_cases(preliminary, SCHEDULE, date(2024, 3, 3))
    assert case["status"] == "provisional"
    final = woman(
        registration(), lab("lab:1", "2024-03-04", "HIVAB", "阳性", status="F"), StoredRecord.of(case)
    )
    [again] = pmtct_cases(final, SCHEDULE, date(2024, 3, 5))
    assert (again["status"], again["record_id"]) == ("open", case["record_id"])


def test_a_corrected_negative_closes_the_case_naming_the_record() -> None:
    """The correction replaces the positive in the store (same record id): the earlier case
    shows which record opened it, and it comes back closed rather than disappearing."""
    [case] = pmtct_cases(
        woman(registration(), lab("lab:1", "2024-03-02", "TPPA", "阳性")), SCHEDULE, date(2024, 3, 3)
    )
    corrected = lab("lab:1", "2024-03-06", "TPPA", "阴性", status="C")
    [closed] = pmtct_cases(
        woman(registration(), corrected, StoredRecord.of(case)), SCHEDULE, date(2024, 3, 7)
    )
    assert closed["record_id"] == case["record_id"]
    assert closed["status"] == "closed"
    assert closed["close_reason"] == "corrected_negative"
    assert closed["closed_on"] == "2024-03-06"
    assert closed["closed_by"] == {
        "record_type": "LabResult", "record_id": "lab:1", "code": "TPPA", "name": "TPPA", "value": "阴性"
    }  # fmt: skip
    assert closed["overdue"] == []


def test_a_case_stays_open_while_another_positive_remains() -> None:
    """TPPA corrected to negative but TRUST still reactive: still a syphilis case."""
    opened = woman(
        registration(),
        lab("lab:1", "2024-03-02", "TPPA", "阳性"),
        lab("lab:2", "2024-03-02", "TRUST", "阳性 1:2"),
    )
    [case] = pmtct_cases(opened, SCHEDULE, date(2024, 3, 3))
    later = woman(
        registration(), lab("lab:1", "2024-03-06", "TPPA", "阴性", "C"), lab("lab:2", "2024-03-02", "TRUST", "阳性 1:2"),
        StoredRecord.of(case),
    )  # fmt: skip
    [still] = pmtct_cases(later, SCHEDULE, date(2024, 3, 7))
    assert still["status"] == "open" and still["opened_by"]["record_id"] == "lab:2"


# --------------------------------------------------------------------------- due dates and done


def hbv_after_birth(*child_records: StoredRecord, as_of: date = date(2024, 9, 21)) -> dict[str, Any]:
    baby = child(newborn(), *child_records)
    history = woman(
        registration(), lab("lab:1", "2024-03-02", "HBSAGQ", "阳性"), delivery(), children=(baby,)
    )
    return only(pmtct_cases(history, SCHEDULE, as_of), "hbv")


def test_infant_items_are_due_at_their_offsets_from_the_delivery() -> None:
    """Born 20 Sep 2024 08:00 (no child known yet): each item's window from the delivery."""
    history = woman(registration(), lab("lab:1", "2024-03-02", "HIVAB", "阳性"), delivery())
    case = only(pmtct_cases(history, SCHEDULE, date(2024, 9, 21)), "hiv")
    assert case["delivery_date"] == "2024-09-20"
    windows = {k: (i["due_from"], i["due_by"]) for k, i in items(case).items()}
    assert windows == {
        "hiv_infant_arv": ("2024-09-20", "2024-09-20"),  # 6 h after 08:00
        "hiv_infant_test_48h": ("2024-09-20", "2024-09-22"),
        "hiv_infant_test_6w": ("2024-11-01", "2024-11-15"),
        "hiv_infant_test_3m": ("2024-12-20", "2025-01-20"),
        "hiv_infant_antibody_12m": ("2025-09-20", "2025-10-20"),
        "hiv_infant_antibody_18m": ("2026-03-20", "2026-04-20"),
    }
    assert all(i["who"] == "infant" and i["status"] == "pending" for i in case["items"])


def test_hours_cross_midnight_and_months_keep_to_the_calendar() -> None:
    """Born 31 Jan 22:00: HBIG by 1 Feb (12 h later); the 1-month dose from 29 Feb (leap year)."""
    baby = child(newborn("2024-01-31T22:00:00+08:00"))
    history = woman(registration("2023-07-01"), lab("lab:1", "2023-07-02", "HBSAGQ", "阳性"),
                    delivery("2024-01-31T22:00:00+08:00"), children=(baby,))  # fmt: skip
    found = items(only(pmtct_cases(history, SCHEDULE, date(2024, 2, 1)), "hbv"))
    assert found["hbv_hbig"]["due_by"] == "2024-02-01"
    assert found["hbv_vaccine_2"]["due_from"] == "2024-02-29"


def test_items_before_birth_have_no_due_dates_yet() -> None:
    [case] = pmtct_cases(
        woman(registration(), lab("lab:1", "2024-03-02", "HBSAGQ", "阳性")), SCHEDULE, date(2024, 3, 5)
    )
    assert all("due_by" not in i for i in case["items"] if i["who"] == "infant")
    assert case["overdue"] == []


def test_newborn_fields_and_infant_results_mark_items_done() -> None:
    """HBIG and the first dose from the NewbornRecord; the 7–12 month test from a lab result."""
    case = hbv_after_birth(
        child_lab("lab:nb:1", "2025-05-10", "HBSAB", "阳性"),
        as_of=date(2025, 6, 1),
    )
    baby_items = items(case)
    assert baby_items["hbv_hbig"]["status"] == "pending"  # hbig not given in this record
    assert baby_items["hbv_infant_test"]["status"] == "done"
    assert baby_items["hbv_infant_test"]["done_record_id"] == "lab:nb:1"
    assert baby_items["hbv_infant_test"]["infant_birth_certificate_no"] == "S500230001"

    given = child(newborn(hbig="是", hep_b_vaccine="已接种", hep_b_vaccine_time="2024-09-20T09:30:00+08:00"))
    history = woman(
        registration(), lab("lab:1", "2024-03-02", "HBSAGQ", "阳性"), delivery(), children=(given,)
    )
    done = items(only(pmtct_cases(history, SCHEDULE, date(2024, 9, 21)), "hbv"))
    assert (done["hbv_hbig"]["status"], done["hbv_hbig"]["done_on"], done["hbv_hbig"]["done_record_id"]) == (
        "done", "2024-09-20", "nb:1",
    )  # fmt: skip
    assert done["hbv_vaccine_1"]["status"] == "done"


def test_each_infant_test_marks_the_item_of_its_age() -> None:
    """HIV early-diagnosis tests on day 1 and at 7 weeks mark 48 h and 6 weeks, not 3 months."""
    baby = child(
        newborn(), child_lab("eid:1", "2024-09-21", "HIVDNA"), child_lab("eid:2", "2024-11-08", "HIVDNA")
    )
    history = woman(registration(), lab("lab:1", "2024-03-02", "HIVAB", "阳性"), delivery(), children=(baby,))
    found = items(only(pmtct_cases(history, SCHEDULE, date(2024, 11, 10)), "hiv"))
    assert found["hiv_infant_test_48h"]["done_record_id"] == "eid:1"
    assert found["hiv_infant_test_6w"]["done_record_id"] == "eid:2"
    assert found["hiv_infant_test_3m"]["status"] == "pending"
    assert found["hiv_infant_test_48h"]["infant_key"] == "his:HIS:NB0001"


def test_overdue_as_of_dates_before_and_after_the_due_date() -> None:
    """HBIG due by 20 Sep 20:00: not overdue on 20 Sep, overdue on 21 Sep; once done, never."""
    assert "hbv_hbig" not in hbv_after_birth(as_of=date(2024, 9, 20))["overdue"]
    late = hbv_after_birth(as_of=date(2024, 9, 21))
    assert "hbv_hbig" in late["overdue"] and "hbv_vaccine_2" not in late["overdue"]
    model = PmtctCase.model_validate(late)
    assert [i.id for i in model.overdue_on(date(2024, 11, 21))] == [
        "hbv_hbig",
        "hbv_vaccine_1",
        "hbv_vaccine_2",
    ]
    given = child(newborn(hbig=True))
    history = woman(
        registration(), lab("lab:1", "2024-03-02", "HBSAGQ", "阳性"), delivery(), children=(given,)
    )
    assert "hbv_hbig" not in only(pmtct_cases(history, SCHEDULE, date(2024, 9, 21)), "hbv")["overdue"]


def test_mother_items_are_due_from_the_opening_result_and_done_by_her_records() -> None:
    treated = stored(
        "PrenatalVisit", record_id="anc:1", person=MOTHER, visit_date="2024-03-09",
        observations=[{"code": "SYPHTX", "name": "梅毒治疗", "value_type": "text", "value": "苄星青霉素"}],
    )  # fmt: skip
    history = woman(registration(), lab("lab:1", "2024-03-02", "TPPA", "阳性"), treated)
    treatment = items(only(pmtct_cases(history, SCHEDULE, date(2024, 3, 20)), "syphilis"))[
        "syphilis_mother_treatment"
    ]
    assert (treatment["due_from"], treatment["due_by"]) == ("2024-03-02", "2024-03-16")
    assert (treatment["status"], treatment["done_record_id"]) == ("done", "anc:1")


# --------------------------------------------------------------------------- audience


def test_the_audience_is_the_pmtct_officer_and_nothing_else() -> None:
    [case] = pmtct_cases(
        woman(registration(), lab("lab:1", "2024-03-02", "HIVAB", "阳性")), SCHEDULE, date(2024, 3, 5)
    )
    for other in ("patient", "wechat", "", None):
        with pytest.raises(ValidationError, match="for the PMTCT officer"):
            PmtctCase.model_validate({**case, "audience": other})
    assert (
        PmtctCase.model_validate({k: v for k, v in case.items() if k != "audience"}).audience
        == "pmtct_officer"
    )


# --------------------------------------------------------------------------- schedule errors


def schedule_problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "pmtct.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_pmtct_schedule(path)
    return [str(p).replace(str(path), "pmtct.yaml") for p in problems_of(caught.value)]


GOOD = (REPO / "mappings" / "rules" / "pmtct.yaml").read_text(encoding="utf-8")


def test_an_unknown_infection_is_refused_at_its_line(tmp_path: Path) -> None:
    text = GOOD.replace("\n  hbv:\n", "\n  hcv:\n")
    line = text.splitlines().index("  hcv:") + 1
    problems = schedule_problems(tmp_path, text)
    assert problems and all(p.startswith(f"pmtct.yaml:{line}: ") for p in problems)
    assert "hcv" in problems[0]


def test_a_bad_offset_and_an_unknown_key_are_refused_at_their_lines(tmp_path: Path) -> None:
    text = GOOD.replace("due_by: 6h\n", "due_by: 6 hours\n", 1).replace(
        "who: infant\n", "who: infant\n        colour: purple\n", 1
    )
    lines = text.splitlines()
    offset_line = lines.index("        due_by: 6 hours") + 1
    key_line = lines.index("        colour: purple") + 1
    problems = schedule_problems(tmp_path, text)
    assert any(
        p.startswith(f"pmtct.yaml:{offset_line}: ") and "'6 hours' is not an offset" in p for p in problems
    )
    assert any(p.startswith(f"pmtct.yaml:{key_line}: ") and "unknown key 'colour'" in p for p in problems)


def test_a_window_ending_before_it_starts_and_an_unknown_field_are_refused(tmp_path: Path) -> None:
    text = GOOD.replace("due_from: 7m\n        due_by: 12m", "due_from: 12m\n        due_by: 7m").replace(
        "field: hbig}", "field: hbigg}"
    )
    problems = schedule_problems(tmp_path, text)
    assert any("due_by 7m is before due_from" in p for p in problems)
    assert any("NewbornRecord has no field 'hbigg'" in p for p in problems)
    assert all(p.split(":")[1].isdigit() for p in problems)


def test_a_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="rule table not found"):
        load_pmtct_schedule(tmp_path / "absent.yaml")
