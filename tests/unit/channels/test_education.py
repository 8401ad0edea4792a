"""Which health-education items (宣教) a woman is due, across a pregnancy, after delivery and
through her child's first year; and the catalogue's mistakes, each at its line."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from channels.wechat.catalogue import EducationCatalogue, load_catalogue
from channels.wechat.education import age_in_months, due_items
from channels.wechat.settings import WechatDestination
from core.errors import ConfigError, ConfigErrors
from support import WECHAT_PATIENT_DESTINATION
from transforms.rules.history import History, StoredRecord

REPO = Path(__file__).resolve().parents[3]
CATALOGUE = load_catalogue(REPO / "mappings/education.yaml")
LMP = date(2026, 1, 5)
DELIVERED = LMP + timedelta(weeks=39, days=2)
MOTHER, CHILD = "id_card:500112199403151525", "his:HIS:NB0001"


def stored(record_type: str, record_id: str, **data: Any) -> StoredRecord:
    return StoredRecord.of({"record_type": record_type, "record_id": record_id, **data})


def registration(**extra: Any) -> StoredRecord:
    day = (LMP + timedelta(weeks=7)).isoformat()
    return stored("PregnancyRegistration", "reg-1", registration_date=day, lmp=LMP.isoformat(), **extra)


def delivery() -> StoredRecord:
    return stored("DeliveryRecord", "del-1", delivery_time=f"{DELIVERED.isoformat()}T09:30:00+08:00")


def child(outcome: str = "live_birth") -> History:
    newborn = stored(
        "NewbornRecord", "nb-1", birth_time=f"{DELIVERED.isoformat()}T09:30:00+08:00", outcome=outcome
    )
    return History(CHILD, {"birth_date": DELIVERED.isoformat()}, (newborn,))


def pregnant() -> History:
    return History(MOTHER, {}, (registration(),))


def delivered(outcome: str = "live_birth") -> History:
    reg = registration(status="closed", close_reason="delivered", closed_date=DELIVERED.isoformat())
    return History(MOTHER, {}, (reg, delivery()), (child(outcome),))


def due_ids(history: History, today: date) -> list[tuple[str, str]]:
    return [(item.id, key) for item, key in due_items(history, CATALOGUE, today)]


def week(n: int) -> date:
    return LMP + timedelta(weeks=n, days=3)


@pytest.mark.parametrize(
    ("gestational_week", "expected"),
    [
        (8, ["preg_t1_folic_acid", "preg_t1_first_visit"]),
        (14, ["preg_t2_prenatal_screening"]),
        (24, ["preg_t2_anomaly_scan", "preg_t2_gdm_ogtt"]),
        (32, ["preg_t3_fetal_movement", "preg_t3_hypertension"]),
        (38, ["preg_t3_birth_preparation"]),
    ],
)
def test_a_registered_pregnant_woman_gets_the_items_of_her_week(
    gestational_week: int, expected: list[str]
) -> None:
    assert due_ids(pregnant(), week(gestational_week)) == [(i, MOTHER) for i in expected]


def test_no_registration_no_pregnancy_items_and_none_before_the_first_window() -> None:
    assert due_ids(History(MOTHER, {}, ()), week(8)) == []
    assert due_ids(pregnant(), week(2)) == []


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (3, ["pp_breastfeeding", "pp_home_visit"]),
        (30, ["pp_mood", "pp_day42_check"]),
    ],
)
def test_after_delivery_she_gets_postpartum_items_by_the_day_and_no_pregnancy_items(
    day: int, expected: list[str]
) -> None:
    found = due_ids(delivered(), DELIVERED + timedelta(days=day))
    assert [i for i, key in found if key == MOTHER] == expected
    assert not any(i.startswith("preg_") for i, _ in found)


@pytest.mark.parametrize(
    ("months", "expected"),
    [
        (1, "child_m1_newborn_care"),
        (3, "child_m3_vitamin_d"),
        (6, "child_m6_complementary_food"),
        (12, "child_m12_development"),
    ],
)
def test_her_child_brings_the_guardian_items_of_its_age_in_months(months: int, expected: str) -> None:
    today = date(
        DELIVERED.year + (DELIVERED.month + months - 1) // 12, (DELIVERED.month + months - 1) % 12 + 1, 20
    )
    assert age_in_months(DELIVERED, today) == months
    found = due_ids(delivered(), today)
    assert (expected, CHILD) in found
    assert [i for i, key in found if key == CHILD] == [expected]


def test_age_in_whole_months() -> None:
    assert age_in_months(date(2024, 1, 31), date(2024, 2, 29)) == 0
    assert age_in_months(date(2024, 1, 31), date(2024, 3, 1)) == 1
    assert age_in_months(date(2024, 5, 10), date(2025, 5, 10)) == 12


def test_after_a_miscarriage_no_pregnancy_and_no_postpartum_items() -> None:
    lost = week(10)
    reg = registration(status="closed", close_reason="miscarriage", closed_date=lost.isoformat())
    history = History(MOTHER, {}, (reg,))
    assert due_ids(pregnant(), lost - timedelta(days=2)) != []  # before the loss, registration open
    for day in range(0, 400, 3):
        assert due_ids(history, lost + timedelta(days=day)) == []


@pytest.mark.parametrize("reason", ["death", "other", "moved"])
def test_a_pregnancy_closed_for_another_reason_gets_nothing_more(reason: str) -> None:
    closed = week(20)
    reg = registration(status="closed", close_reason=reason, closed_date=closed.isoformat())
    assert due_ids(History(MOTHER, {}, (reg,)), week(24)) == []


def test_a_stillbirth_brings_no_postpartum_and_no_child_items() -> None:
    history = delivered("stillbirth")
    for day in (3, 30):
        assert due_ids(history, DELIVERED + timedelta(days=day)) == []
    assert due_ids(history, date(DELIVERED.year + 1, DELIVERED.month, 20)) == []


def test_each_item_once_from_registration_to_the_childs_first_birthday() -> None:
    """Day by day, as the schedule runs, with what was sent fed back: every item of the
    catalogue reaches her (or her child) exactly once."""
    sent: list[tuple[str, str]] = []
    day = LMP + timedelta(weeks=7)
    while day <= DELIVERED + timedelta(days=400):
        history = pregnant() if day < DELIVERED else delivered()
        for item, key in due_items(history, CATALOGUE, day, already=set(sent)):
            sent.append((item.id, key))
        day += timedelta(days=1)
    assert len(sent) == len(set(sent))
    assert sorted(i for i, _ in sent) == sorted(item.id for item in CATALOGUE.items)
    assert {key for i, key in sent if i.startswith("child_")} == {CHILD}


# --------------------------------------------------------------------------- the catalogue file

GOOD_ITEM = """\
  - id: preg_first
    title: 孕早期保健
    link: https://wx.example-hospital.cn/edu/first
    audience: pregnant
    window: [4, 12]
    source: 《孕产期保健工作规范》
"""


def write(tmp_path: Path, items: str, head: str = "kind: education_catalogue\nversion: 1\n") -> Path:
    path = tmp_path / "education.yaml"
    path.write_text(head + "items:\n" + items, encoding="utf-8")
    return path


def errors_of(path: Path) -> list[tuple[int | None, str]]:
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_catalogue(path)
    exc = caught.value
    found = exc.errors if isinstance(exc, ConfigErrors) else [exc]
    return [(e.line, e.message) for e in found]


def test_the_shipped_catalogue_covers_pregnancy_postpartum_and_the_first_year() -> None:
    assert isinstance(CATALOGUE, EducationCatalogue)
    assert len(CATALOGUE.items) >= 12
    by_audience = {
        a: [i for i in CATALOGUE.items if i.audience == a]
        for a in ("pregnant", "postpartum", "child_guardian")
    }
    weeks = {w for i in by_audience["pregnant"] for w in range(i.window[0], i.window[1] + 1)}
    assert {8, 20, 32} <= weeks  # each trimester
    assert by_audience["postpartum"] and by_audience["child_guardian"]
    assert all(i.link.startswith("https://wx.example-hospital.cn/edu/") for i in CATALOGUE.items)


def test_catalogue_mistakes_are_reported_at_their_lines(tmp_path: Path) -> None:
    items = GOOD_ITEM + (
        "  - id: preg_first\n"  # line 10: the same id again
        "    title: 重复\n"
        "    link: http://wx.example-hospital.cn/edu/x\n"  # line 12: not https
        "    audience: pregnant\n"
        "    window: [4, 12]\n"
        "    source: x\n"
        "  - id: pp_late\n"
        "    title: 产后\n"
        "    link: https://wx.example-hospital.cn/edu/pp\n"
        "    audience: postpartum\n"
        "    window: [30, 90]\n"  # line 20: past 42 days
        "    source: x\n"
        "    colour: red\n"  # line 22: no such key
    )
    found = errors_of(write(tmp_path, items))
    lines = {line for line, _ in found}
    assert {12, 20, 22} <= lines
    assert any("https" in message for line, message in found if line == 12)
    assert any("days after delivery" in message for line, message in found if line == 20)
    assert any("colour" in message for line, message in found if line == 22)


def test_a_duplicate_id_is_named_at_its_line(tmp_path: Path) -> None:
    found = errors_of(write(tmp_path, GOOD_ITEM + GOOD_ITEM))
    assert any(line == 10 and "used twice" in message for line, message in found)


def test_a_title_the_template_key_would_refuse_is_named_at_its_line(tmp_path: Path) -> None:
    long_title = GOOD_ITEM.replace("孕早期保健", "孕早期保健与营养指导以及叶酸补充的全部注意事项")
    path = write(tmp_path, long_title)
    load_catalogue(path)  # a long title is a fine catalogue…
    destination = WechatDestination.model_validate(
        {
            **WECHAT_PATIENT_DESTINATION,
            "education": "education.yaml",
            "education_template_id": "TPL_EDU",
            "education_keys": {"thing1": {"type": "thing", "value": "{title}"}},
        }
    )
    with pytest.raises(ConfigError) as caught:  # …but not for a `thing` key (20 characters)
        destination.check_file(path)
    assert caught.value.line == 5
    assert "thing1" in caught.value.message


def test_education_settings_need_a_template_and_know_their_placeholders() -> None:
    base = {**WECHAT_PATIENT_DESTINATION, "education": "mappings/education.yaml"}
    with pytest.raises(ValueError, match="education_template_id"):
        WechatDestination.model_validate(base)
    with pytest.raises(ValueError, match="unknown placeholder"):
        WechatDestination.model_validate(
            {
                **base,
                "education_template_id": "T",
                "education_keys": {"thing1": {"type": "thing", "value": "{name}"}},
            }
        )
    ok = WechatDestination.model_validate({**base, "education_template_id": "T"})
    assert ok.config_files() == [("education", 0, "mappings/education.yaml")]
