"""The lines `records timeline` and `records list` print, in each language."""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from core import i18n
from engine.listing_commands import _record_line, _timeline_line

SHANGHAI = ZoneInfo("Asia/Shanghai")
CHILDS_EXAM = {
    "event_time": "2025-06-30T16:30:00+00:00",  # the next day in Shanghai
    "stage": "child",
    "record_type": "ChildHealthExam",
    "record_id": "che:1",
    "person_key": "his:HIS:2",
    "person_name": "李沐瑶",
    "is_child": True,
    "record": {"exam": {"display": "满月体检"}},
}


@pytest.fixture
def english() -> Iterator[None]:
    i18n.set_language("en")
    yield
    i18n.set_language("zh")


def test_a_childs_record_in_english_says_child_not_the_chinese_mark(english: None) -> None:
    line = _timeline_line(CHILDS_EXAM, SHANGHAI)
    assert line.split()[:4] == ["2025-07-01", "child", "ChildHealthExam", "李沐瑶"]
    assert "李沐瑶 (child)" in line and "（子女）" not in line


def test_a_childs_record_in_chinese() -> None:
    line = _timeline_line(CHILDS_EXAM, SHANGHAI)
    assert line.split()[:3] == ["2025-07-01", "儿童", "儿童保健体检"]
    assert "李沐瑶（子女）" in line and "满月体检" in line


def test_a_person_without_a_name_shows_a_dash(english: None) -> None:
    row = {"record_type": "Person", "record_id": "his:LIS:9", "person_key": "his:LIS:9", "record": {}}
    assert _record_line(row).split() == ["Person", "his:LIS:9", "his:LIS:9", "-"]
