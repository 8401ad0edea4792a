"""WeChat's typed-key rules and the notice rules' condition language, as routes.yaml uses them."""

from __future__ import annotations

import pytest

from channels.wechat.keys import KeyValueRefused, check_key, key_problem
from channels.wechat.settings import parse_condition


@pytest.mark.parametrize(
    ("kind", "good", "bad"),
    [
        ("thing", "血常规", "血常规" * 7),
        ("phrase", "黄色", "yellow"),
        ("phrase", "检验已出", "检验报告已出"),
        ("character_string", "JC2024032100022", "JC-2024 0321"),
        ("name", "陈**", "陈" * 11),
        ("time", "2024-03-21 11:35", "2024-03-21T11:35:00+08:00"),
        ("time", "2024年3月21日 11:35", "11点35分"),
        ("date", "2024-03-21", "21/03/2024"),
        ("number", "-3.5", "3,5"),
        ("phone_number", "023-68485000", "电话023"),
        ("amount", "¥12.50", "12.505"),
    ],
)
def test_each_key_type_takes_what_wechat_takes(kind: str, good: str, bad: str) -> None:
    assert key_problem(kind, good) is None
    assert key_problem(kind, bad) is not None


def test_a_refused_value_names_the_key_and_rule_but_not_the_value() -> None:
    with pytest.raises(KeyValueRefused) as caught:
        check_key("thing1", "thing", "陈思雨的血红蛋白118g/L，低于参考范围下限请复查")
    text = str(caught.value)
    assert "thing1 (thing)" in text and "at most 20 characters" in text
    assert "陈思雨" not in text and "118" not in text


def test_conditions_read_as_written() -> None:
    record = {"report_status": "F", "above_clinical": True, "order": {"code": "BLD01", "display": "血常规"}}
    holds = [c.holds(record) for c in parse_condition("report_status in [F, C] and above_clinical is true")]
    assert holds == [True, True]
    assert [c.holds(record) for c in parse_condition("order == BLD01")] == [True]  # a coded value by its code
    assert [c.holds(record) for c in parse_condition("report_status != 'F'")] == [False]
    with pytest.raises(ValueError, match="cannot read condition"):
        parse_condition("report_status = F")
    with pytest.raises(ValueError, match="`is` takes true, false or null"):
        parse_condition("above_clinical is yes")
