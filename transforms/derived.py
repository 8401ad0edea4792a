"""Derived maternal and child health fields: gestational age, EDD and a child's age.

Feeds send gestational age as text ("10+3", "12周+4天") and ages as birth dates; the canonical
records key encounters by gestational week or age in months (MCH-DOMAIN §2–3), so these
small, pure functions compute them the same way everywhere. Every function raises ValueError
with one sentence an interface engineer can act on.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Callable
from datetime import date, datetime, timedelta

GESTATION_DAYS = 280
"""Naegele's rule: EDD = LMP + 280 days (40 weeks)."""

MAX_GESTATION_WEEKS = 45

_WEEK_MARK = r"(?:周|w|wk|wks|weeks?)"
_DAY_MARK = r"(?:天|日|d|days?)"
_GA_WEEKS_DAYS = re.compile(rf"^孕?(?P<w>\d{{1,2}})(?:{_WEEK_MARK}\+?|\+)(?P<d>\d{{1,2}}){_DAY_MARK}?周?$")
_GA_WEEKS = re.compile(rf"^孕?(?P<w>\d{{1,2}}){_WEEK_MARK}?$")


def check_gestational_age(weeks: int, days: int, source: str) -> tuple[int, int]:
    """(weeks, days) if plausible (weeks 0–45, days 0–6), else ValueError naming `source`."""
    if any(isinstance(v, bool) or not isinstance(v, int) for v in (weeks, days)):
        raise ValueError(f"gestational age {source} must be whole weeks and days")
    if not 0 <= weeks <= MAX_GESTATION_WEEKS:
        raise ValueError(f"gestational age {source} has {weeks} weeks; expected 0–{MAX_GESTATION_WEEKS}")
    if not 0 <= days <= 6:
        raise ValueError(f"gestational age {source} has {days} days; expected 0–6 after the weeks")
    return weeks, days


def parse_gestational_age(text: str) -> tuple[int, int]:
    """Parse "W+D" text into (weeks, days): "10+3", "39周2天", "39周+2", "12周4日", "39w2d", "16周".

    The one gestational-age parser: record fields (`GestationalAge`), mapping converters and
    derived values all call it, so a spelling is accepted everywhere or nowhere. Full-width
    digits and plus signs are accepted (NFKC), as are spaces, a leading 孕 and a trailing 周.
    """
    if not isinstance(text, str):
        raise ValueError(f"gestational age must be text like 10+3, got {text!r}")
    cleaned = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text)).lower()
    if m := _GA_WEEKS_DAYS.match(cleaned):
        return check_gestational_age(int(m["w"]), int(m["d"]), repr(text))
    if m := _GA_WEEKS.match(cleaned):
        return check_gestational_age(int(m["w"]), 0, repr(text))
    raise ValueError(
        f"gestational age {text!r} is not in weeks+days form (expected e.g. 10+3, 12周+4天 or 16周)"
    )


def _as_date(value: date, name: str) -> date:
    # datetime is a date subclass; its calendar day depends on the time zone, so refuse it.
    if isinstance(value, datetime) or not isinstance(value, date):
        raise ValueError(f"{name} must be a calendar date (datetime.date), got {value!r}")
    return value


def _split_days(total_days: int, what: str) -> tuple[int, int]:
    if total_days < 0:
        raise ValueError(f"{what} is before the start of the pregnancy")
    weeks, days = divmod(total_days, 7)
    if weeks > MAX_GESTATION_WEEKS:
        raise ValueError(
            f"{what} gives {weeks} weeks of gestation, more than {MAX_GESTATION_WEEKS}; check the dates"
        )
    return weeks, days


def gestational_age_at(lmp: date, on: date) -> tuple[int, int]:
    """(completed weeks, days) on a date, counted from the last menstrual period (末次月经)."""
    lmp = _as_date(lmp, "LMP")
    on = _as_date(on, "date")
    return _split_days((on - lmp).days, f"date {on.isoformat()} (LMP {lmp.isoformat()})")


def edd_from_lmp(lmp: date) -> date:
    """Expected date of delivery (预产期) by Naegele's rule: LMP + 280 days."""
    return _as_date(lmp, "LMP") + timedelta(days=GESTATION_DAYS)


def _ultrasound_ga(ga_at_exam: tuple[int, int]) -> tuple[int, int]:
    if not isinstance(ga_at_exam, tuple | list) or len(ga_at_exam) != 2:
        raise ValueError(f"gestational age at ultrasound must be (weeks, days), got {ga_at_exam!r}")
    return check_gestational_age(ga_at_exam[0], ga_at_exam[1], f"at ultrasound {tuple(ga_at_exam)!r}")


def gestational_age_from_ultrasound(
    exam_date: date, ga_at_exam: tuple[int, int], on: date
) -> tuple[int, int]:
    """(weeks, days) on a date, dated by an ultrasound that measured ga_at_exam on exam_date."""
    exam_date = _as_date(exam_date, "ultrasound date")
    on = _as_date(on, "date")
    weeks, days = _ultrasound_ga(ga_at_exam)
    total = weeks * 7 + days + (on - exam_date).days
    return _split_days(total, f"date {on.isoformat()} (ultrasound {exam_date.isoformat()})")


def edd_from_ultrasound(exam_date: date, ga_at_exam: tuple[int, int]) -> date:
    """EDD corrected by an early ultrasound: the day that ultrasound dating reaches 40+0."""
    exam_date = _as_date(exam_date, "ultrasound date")
    weeks, days = _ultrasound_ga(ga_at_exam)
    return exam_date + timedelta(days=GESTATION_DAYS - (weeks * 7 + days))


def age_in_days(birth: date, on: date) -> int:
    """Age in completed days (the unit of the WHO growth tables)."""
    birth = _as_date(birth, "birth date")
    on = _as_date(on, "date")
    days = (on - birth).days
    if days < 0:
        raise ValueError(f"date {on.isoformat()} is before the birth date {birth.isoformat()}")
    return days


def age_in_months(birth: date, on: date) -> int:
    """Age in completed calendar months (月龄), the key of the child health-check schedule.

    A month is complete on the same day of the month as the birth, or on the last day of a
    shorter month (born 31 Jan: 1 month on 28 Feb, or 29 Feb in a leap year; born 29 Feb: 12
    months on 28 Feb of a common year). This is the calendar rule of the Civil Code of the PRC,
    art. 202 (没有对应日的，月末日为期间的最后一日). Growth z-scores do not use it: the WHO
    tables are looked up by age in days (`age_in_days`).
    """
    birth = _as_date(birth, "birth date")
    on = _as_date(on, "date")
    if on < birth:
        raise ValueError(f"date {on.isoformat()} is before the birth date {birth.isoformat()}")
    months = (on.year - birth.year) * 12 + (on.month - birth.month)
    anniversary_day = min(birth.day, calendar.monthrange(on.year, on.month)[1])
    if on.day < anniversary_day:
        months -= 1
    return months


def gestational_age_value(text: str) -> dict[str, int]:
    """Mapping converter: "10+3" → {"weeks": 10, "days": 3} (JSON-ready)."""
    weeks, days = parse_gestational_age(text)
    return {"weeks": weeks, "days": days}


CONVERTERS: dict[str, Callable[[str], object]] = {
    "gestational_age": gestational_age_value,
}
"""Text converters the mapping interpreter can merge into its own table."""
