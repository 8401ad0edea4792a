from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from engine.operator_time import iso_time, local_date, local_time

SHANGHAI = ZoneInfo("Asia/Shanghai")


def test_times_are_shown_in_the_zone_with_its_offset() -> None:
    when = datetime(2024, 3, 20, 17, 30, tzinfo=UTC)
    assert local_time(when, SHANGHAI) == "2024-03-21 01:30:00+08:00"
    assert local_time("2024-03-20T17:30:00+00:00", ZoneInfo("UTC")) == "2024-03-20 17:30:00+00:00"
    assert local_date(when, SHANGHAI) == "2024-03-21"
    assert iso_time(when, SHANGHAI) == "2024-03-21T01:30:00+08:00"


def test_a_naive_time_is_utc_as_the_database_keeps_it() -> None:
    assert local_time(datetime(2024, 3, 20, 17, 30), SHANGHAI) == "2024-03-21 01:30:00+08:00"


def test_no_time_is_a_dash() -> None:
    assert local_time(None, SHANGHAI) == "-"
    assert local_date("", SHANGHAI) == "----------"
    assert iso_time(None, SHANGHAI) is None
