"""Suggested five-colour grading from the shipped rule table: each factor at its boundary,
a pregnancy whose colour rises and falls, the comparison with the clinician's grading."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from core.errors import ConfigError, ConfigErrors
from support import REPO
from transforms.records import validate_record
from transforms.rules.history import History, StoredRecord
from transforms.rules.risk import load_risk_table, suggest_assessments

TABLE = load_risk_table(REPO / "mappings/rules/risk_five_colour.yaml")
BORN = "1994-03-15"  # 30 at registration on 2024-03-01
PERSON = {"his_id": "0010023456", "his_system": "HIS", "name": "陈思雨", "birth_date": BORN, "sex": "2"}


def rec(kind: str, rid: str, **fields: Any) -> StoredRecord:
    payload = validate_record(kind, {"record_id": rid, "person": PERSON, **fields})
    return StoredRecord.of(payload.model_dump(mode="json", exclude_none=True))


def registration(**fields: Any) -> StoredRecord:
    base = {
        "registration_date": "2024-03-01",
        "lmp": "2024-01-05",
        "height": {"value": 160, "unit": "cm"},
        "weight": {"value": 55, "unit": "kg"},
    }
    return rec("PregnancyRegistration", "reg-1", **{**base, **fields})


def lab(rid: str, day: str, *observations: tuple[str, str, str, str | None]) -> StoredRecord:
    """observations: (code, OBX-2 type, value, unit)."""
    obx = [
        {"code": code, "value_type": kind, "value": value, "unit": unit, "status": "F"}
        for code, kind, value, unit in observations
    ]
    return rec("LabResult", rid, reported_at=f"{day}T10:00:00+08:00", observations=obx)


def grades(*records: StoredRecord, person: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return suggest_assessments(History("his:HIS:0010023456", person or {}, records), TABLE)


def last(*records: StoredRecord) -> tuple[str, bool, set[str]]:
    final = grades(*records)[-1]
    return final["colour"], final["purple"], {f["code"]["code"] for f in final["factors"]}


def test_the_shipped_table_cites_a_document_for_every_factor() -> None:
    assert len(TABLE.factors) >= 25
    assert {f.colour for f in TABLE.factors} == {"yellow", "orange", "red", "purple"}
    for factor in TABLE.factors:
        assert TABLE.sources[factor.source].strip(), factor.id
    assert "国卫办妇幼发〔2017〕35号" in TABLE.sources["nhc2017"]


def test_a_plain_registration_is_suggested_green() -> None:
    [only] = grades(registration())
    assert (only["colour"], only["purple"], only["factors"]) == ("green", False, [])
    assert only["method"] == "suggested" and only["rule_set"] == "nhc-2017-35 2017.1"
    assert only["assessment_date"] == "2024-03-01"
    assert only["gestational_age"] == {"weeks": 8, "days": 0}
    validate_record("RiskAssessment", only)


@pytest.mark.parametrize(
    ("born", "expected"),
    [
        ("1989-03-02", set()),  # 34, her birthday is the next day
        ("1989-03-01", {"age_35_or_more"}),  # 35 on the day
        ("1984-03-02", {"age_35_or_more"}),  # 39
        ("1984-03-01", {"age_35_or_more", "age_40_or_more"}),  # 40
        ("2005-03-02", {"age_18_or_less"}),  # 18
        ("2005-03-01", set()),  # 19 on the day
    ],
)
def test_age_at_registration(born: str, expected: set[str]) -> None:
    person = {**PERSON, "birth_date": born}
    payload = validate_record(
        "PregnancyRegistration",
        {"record_id": "reg-1", "person": person, "registration_date": "2024-03-01", "lmp": "2024-01-05"},
    )
    final = grades(StoredRecord.of(payload.model_dump(mode="json", exclude_none=True)))[-1]
    assert {f["code"]["code"] for f in final["factors"]} == expected


@pytest.mark.parametrize(
    ("weight", "expected", "colour"),
    [
        (64.0, set(), "green"),  # BMI 25.0 is not above 25
        (64.3, {"bmi_over_25"}, "yellow"),  # 25.1
        (71.5, {"bmi_over_25"}, "yellow"),  # 27.9
        (71.7, {"bmi_over_25", "bmi_28_or_more"}, "orange"),  # 28.0
        (47.4, set(), "green"),  # 18.5
        (47.1, {"bmi_under_18_5"}, "yellow"),  # 18.4
    ],
)
def test_bmi_from_pre_pregnancy_weight_and_height(weight: float, expected: set[str], colour: str) -> None:
    reg = registration(pre_pregnancy_weight={"value": weight, "unit": "kg"})
    assert last(reg)[0] == colour
    assert last(reg)[2] == expected


def test_bmi_falls_back_to_the_booking_weight() -> None:
    assert last(registration(weight={"value": 72, "unit": "kg"}))[2] == {"bmi_over_25", "bmi_28_or_more"}


@pytest.mark.parametrize(
    ("hb", "colour", "factor"),
    [
        ("110", "green", None),
        ("109", "yellow", "anaemia"),
        ("60", "yellow", "anaemia"),
        ("59", "orange", "severe_anaemia"),
        ("41", "orange", "severe_anaemia"),
        ("40", "red", "anaemia_40_or_less"),
    ],
)
def test_haemoglobin_bands(hb: str, colour: str, factor: str | None) -> None:
    found = last(registration(), lab("l-1", "2024-04-01", ("HGB", "NM", hb, "g/L")))
    assert found[0] == colour
    assert found[2] == ({factor} if factor else set())


@pytest.mark.parametrize(
    ("plt", "colour", "factor"),
    [
        ("100", "green", None),
        ("99", "yellow", "thrombocytopenia"),
        ("50", "yellow", "thrombocytopenia"),
        ("49", "orange", "thrombocytopenia_30_50"),
        ("30", "orange", "thrombocytopenia_30_50"),
        ("29", "red", "thrombocytopenia_under_30"),
    ],
)
def test_platelet_bands(plt: str, colour: str, factor: str | None) -> None:
    found = last(registration(), lab("l-1", "2024-04-01", ("777-3", "NM", plt, "10^9/L")))
    assert found[0] == colour
    assert found[2] == ({factor} if factor else set())


@pytest.mark.parametrize(
    ("bp", "expected"),
    [
        ("139/89", set()),
        ("140/80", {"gestational_hypertension"}),
        ("130/90", {"gestational_hypertension"}),
        ("159/109", {"gestational_hypertension"}),
        ("160/100", {"gestational_hypertension", "severe_hypertension"}),
        ("150/110", {"gestational_hypertension", "severe_hypertension"}),
    ],
)
def test_blood_pressure_at_a_visit(bp: str, expected: set[str]) -> None:
    visit = rec("PrenatalVisit", "v-1", visit_date="2024-04-01", blood_pressure=bp)
    assert last(registration(), visit)[2] == expected


@pytest.mark.parametrize(
    ("code", "value", "fires"),
    [
        ("GLU0", "5.0", False),
        ("GLU0", "5.1", True),
        ("GLU1", "9.9", False),
        ("GLU1", "10.0", True),
        ("GLU2", "8.4", False),
        ("GLU2", "8.5", True),
        ("14771-0", "5.3", True),
    ],
)
def test_ogtt_thresholds(code: str, value: str, fires: bool) -> None:
    found = last(registration(), lab("l-1", "2024-05-10", (code, "NM", value, "mmol/L")))
    assert ("gestational_diabetes" in found[2]) is fires


def test_form_items_assisted_reproduction_and_diabetes_on_drugs() -> None:
    ivf = {"code": "MCH0107", "name": "辅助生殖", "value_type": "ST", "value": "是"}
    drugs = {"code": "MCH0305", "name": "糖尿病用药", "value_type": "ST", "value": "是"}
    no = {**drugs, "value": "否"}
    assert last(registration(observations=[ivf]))[2] == {"assisted_reproduction"}
    visit = rec("PrenatalVisit", "v-1", visit_date="2024-05-01", observations=[drugs])
    assert last(registration(), visit)[:1] == ("orange",)
    visit_no = rec("PrenatalVisit", "v-1", visit_date="2024-05-01", observations=[no])
    assert last(registration(), visit_no)[0] == "green"


@pytest.mark.parametrize(("count", "expected"), [(1, set()), (2, {"twins"}), (3, {"three_or_more_fetuses"})])
def test_fetus_count_from_ultrasound(count: int, expected: set[str]) -> None:
    scan = rec(
        "ImagingReport",
        "us-1",
        reported_at="2024-04-20T09:00:00+08:00",
        fetus_count=count,
        impression="宫内妊娠",
    )
    assert last(registration(), scan)[2] == expected


@pytest.mark.parametrize(
    ("caesareans", "expected"),
    [(0, set()), (1, {"scarred_uterus"}), (2, {"scarred_uterus", "uterine_surgery_twice"})],
)
def test_previous_caesareans(caesareans: int, expected: set[str]) -> None:
    assert last(registration(obstetric_history={"caesareans": caesareans}))[2] == expected


@pytest.mark.parametrize(
    ("obx", "factors"),
    [
        (("HIVAB", "ST", "阳性", None), {"hiv"}),
        (("TPPA", "ST", "阳性", None), {"syphilis"}),
        (("TRUST", "ST", "阳性 1:8", None), {"syphilis"}),
        (("HBSAGQ", "ST", "阳性(+)", None), {"hbsag_carrier", "hepatitis_b"}),
        (("HCVAB", "ST", "reactive", None), {"hepatitis_c"}),
        (("TSPOT", "ST", "阳性", None), {"tuberculosis"}),
        (("HIVAB", "ST", "阴性（-）", None), set()),
        (("TPPA", "ST", "无反应性", None), set()),
    ],
)
def test_infections_set_purple(obx: tuple[str, str, str, str | None], factors: set[str]) -> None:
    colour, purple, fired = last(registration(), lab("l-1", "2024-03-02", obx))
    assert fired == factors
    assert purple is bool(factors)
    assert colour == ("yellow" if "hbsag_carrier" in factors else "green")


def test_quantitative_hbsag_reads_against_its_cut_off() -> None:
    def hbsag(value: str) -> set[str]:
        obs = {
            "code": "HBSAG",
            "value_type": "NM",
            "value": value,
            "unit": "IU/mL",
            "reference_range": "<0.05",
        }
        return last(
            registration(),
            rec("LabResult", "l-1", reported_at="2024-03-02T10:00:00+08:00", observations=[obs]),
        )[2]

    assert hbsag("0.01") == set()
    assert hbsag("1234.5") == {"hbsag_carrier", "hepatitis_b"}


def test_a_factor_names_the_value_and_the_record_it_came_from() -> None:
    final = grades(registration(), lab("lab:LIS:7", "2024-04-01", ("HGB", "NM", "96", "g/L")))[-1]
    [factor] = final["factors"]
    assert factor["colour"] == "yellow" and factor["description"].startswith("妊娠合并贫血")
    assert factor["source_observation"] == {
        "record_type": "LabResult",
        "record_id": "lab:LIS:7",
        "code": "HGB",
        "name": "血红蛋白",
        "value": "96 g/L",
    }
    assert factor["code"]["code"] == "anaemia" and "35号" in factor["code"]["display"]


def test_a_simulated_pregnancy_whose_colour_rises_and_falls() -> None:
    history = [
        registration(),  # 03-01 green
        rec("PrenatalVisit", "v-1", visit_date="2024-04-02", hb={"value": 104, "unit": "g/L"}),  # yellow
        lab("l-1", "2024-05-06", ("PLT", "NM", "45", "10^9/L")),  # orange
        lab("l-2", "2024-05-20", ("PLT", "NM", "38", "10^9/L")),  # still orange, same factors: no new grade
        lab("l-3", "2024-06-03", ("PLT", "NM", "162", "10^9/L"), ("HGB", "NM", "112", "g/L")),  # green
        rec("PrenatalVisit", "v-2", visit_date="2024-07-01", blood_pressure="142/88"),  # yellow
        rec("PrenatalVisit", "v-3", visit_date="2024-07-15", blood_pressure="122/76"),  # green again
    ]
    seen = [(g["assessment_date"], g["colour"]) for g in grades(*history)]
    assert seen == [
        ("2024-03-01", "green"),
        ("2024-04-02", "yellow"),
        ("2024-05-06", "orange"),
        ("2024-06-03", "green"),
        ("2024-07-01", "yellow"),
        ("2024-07-15", "green"),
    ]
    ids = [g["record_id"] for g in grades(*history)]
    assert len(set(ids)) == len(ids)
    assert all(
        i.startswith("risk:") and i.endswith(f":2024-01-05:{d}") for i, (d, _) in zip(ids, seen, strict=True)
    )
    assert "0010023456" not in "".join(ids)  # the person key is hashed: ids reach logs


def test_the_same_records_in_any_order_give_the_same_suggestions() -> None:
    history = [
        registration(obstetric_history={"caesareans": 1}),
        rec(
            "PrenatalVisit",
            "v-1",
            visit_date="2024-04-02",
            hb={"value": 104, "unit": "g/L"},
            risk={"colour": "Y"},
        ),
        lab("l-1", "2024-05-06", ("PLT", "NM", "45", "10^9/L"), ("TPPA", "ST", "阳性", None)),
        lab("l-2", "2024-06-03", ("PLT", "NM", "162", "10^9/L")),
        rec("PrenatalVisit", "v-2", visit_date="2024-07-01", blood_pressure="162/96", risk={"colour": "O"}),
    ]
    expected = grades(*history)
    shuffler = random.Random(12)
    for _ in range(20):
        shuffler.shuffle(history)
        assert grades(*history) == expected


def test_higher_than_the_clinicians_grading_is_marked() -> None:
    reg = registration(risk={"colour": "G"})
    visit = rec(
        "PrenatalVisit",
        "v-1",
        visit_date="2024-04-02",
        hb={"value": 104, "unit": "g/L"},
        risk={"colour": "Y"},
    )
    low_plt = lab("l-1", "2024-05-06", ("PLT", "NM", "45", "10^9/L"))
    graded_orange = rec(
        "RiskAssessment",
        "ra-1",
        assessment_date="2024-05-08",
        colour="O",
        method="manual",
        factors="血小板减少",
    )
    found = [
        (g["assessment_date"], g["colour"], g["clinical_colour"], g["above_clinical"])
        for g in grades(reg, visit, low_plt, graded_orange)
    ]
    assert found == [
        ("2024-03-01", "green", "green", False),
        ("2024-04-02", "yellow", "yellow", False),
        ("2024-05-06", "orange", "yellow", True),  # what staff are alerted about
        ("2024-05-08", "orange", "orange", False),  # the clinician agreed
    ]


def test_purple_where_the_clinician_has_none_is_higher() -> None:
    reg = registration(risk={"colour": "Y"})
    syphilis = lab("l-1", "2024-03-05", ("TPPA", "ST", "阳性", None))
    final = grades(reg, syphilis)[-1]
    assert (final["colour"], final["purple"], final["above_clinical"]) == ("green", True, True)


def test_no_clinical_grading_yet_and_a_risk_is_higher() -> None:
    final = grades(registration(), lab("l-1", "2024-04-01", ("HGB", "NM", "96", "g/L")))[-1]
    assert final["clinical_colour"] is None and final["above_clinical"] is True
    first = grades(registration())[0]
    assert first["above_clinical"] is False  # green with nobody's grading is not an alert


def test_nothing_is_suggested_without_a_registration() -> None:
    assert grades(lab("l-1", "2024-04-01", ("HGB", "NM", "40", "g/L"))) == []


def test_records_after_the_postpartum_period_do_not_count() -> None:
    delivery = rec("DeliveryRecord", "d-1", delivery_time="2024-10-10T08:00:00+08:00")
    late = lab("l-9", "2024-12-01", ("HGB", "NM", "40", "g/L"))  # 52 days after delivery
    assert [g["colour"] for g in grades(registration(), delivery, late)] == ["green"]


def test_suggestions_already_stored_are_not_read_as_gradings() -> None:
    [suggested] = grades(registration(), lab("l-1", "2024-04-01", ("HGB", "NM", "96", "g/L")))[1:]
    stored = StoredRecord.of(
        validate_record("RiskAssessment", suggested).model_dump(mode="json", exclude_none=True)
    )
    again = grades(registration(), lab("l-1", "2024-04-01", ("HGB", "NM", "96", "g/L")), stored)
    assert again[-1]["clinical_colour"] is None and again[-1]["above_clinical"] is True


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "risk.yaml"
    path.write_text(text, encoding="utf-8")
    return path


HEAD = """kind: risk_grading
rule_set: test
version: 1
title: t
sources: {a: 文件}
facts:
  hb: {name: 血红蛋白, from: [{record: LabResult, codes: [HGB]}]}
  hiv: {name: HIV, kind: positive, from: [{record: LabResult, codes: [HIVAB]}]}
factors:
"""


@pytest.mark.parametrize(
    ("line", "line_no", "message"),
    [
        (
            "  - {id: x, colour: yellow, name: n, fact: hbb, lt: 110, source: a}",
            10,
            "fact 'hbb' is not under",
        ),
        ("  - {id: x, colour: pink, name: n, fact: hb, lt: 110, source: a}", 10, "colour"),
        (
            "  - {id: x, colour: yellow, name: n, fact: hb, lt: 110, source: b}",
            10,
            "'b' is not under `sources:`",
        ),
        ("  - {id: x, colour: purple, name: n, fact: hiv, lt: 1, source: a}", 10, "takes `present: true`"),
        ("  - {id: x, colour: yellow, name: n, fact: hb, present: true, source: a}", 10, "takes bounds"),
        (
            "  - {id: x, colour: yellow, name: n, fact: hb, lt: 110, source: a, colour_hint: x}",
            10,
            "colour_hint",
        ),
    ],
)
def test_a_wrong_line_is_named_with_its_number(tmp_path: Path, line: str, line_no: int, message: str) -> None:
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_risk_table(write(tmp_path, HEAD + line + "\n"))
    text = str(caught.value)
    assert f"risk.yaml:{line_no}:" in text and message in text


def test_yes_written_as_a_kind_is_explained(tmp_path: Path) -> None:
    text = (
        HEAD.replace("kind: positive", "kind: yes")
        + "  - {id: x, colour: purple, name: n, fact: hiv, present: true, source: a}\n"
    )
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_risk_table(write(tmp_path, text))
    assert "risk.yaml:8:" in str(caught.value) and "yes_no" in str(caught.value)


def test_the_rules_doc_lists_every_factor_of_the_shipped_table() -> None:
    doc = (REPO / "docs/rules.md").read_text(encoding="utf-8")
    for factor in TABLE.factors:
        assert f"| `{factor.id}` | {factor.colour} | {factor.name} |" in doc, factor.id
