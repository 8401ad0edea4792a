"""Gestational age (孕周) as weeks + days, the way Chinese forms write it (`10+3` = 10周3天).

Kept as two integers rather than a float of weeks so that `12+6` and `13+0` never round
into each other: the schedule (first visit before 13 weeks, 16–24, 28–40) depends on it.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from transforms.records.base import ValueModel

__all__ = ["MAX_WEEKS", "GestationalAge", "parse_gestational_age"]

MAX_WEEKS = 45

_GA_TEXT = re.compile(
    r"""^\s*(?:孕\s*)?(?P<weeks>\d{1,2})\s*
    (?:
        (?:周|w|wk|wks|weeks?)\s*(?:\+\s*)?(?:(?P<days>\d{1,2})\s*(?:天|d|days?)?)?
      | \+\s*(?P<days2>\d{1,2})\s*(?:天|d|days?)?
    )?
    \s*(?:周)?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


class GestationalAge(ValueModel):
    """孕周 gestational age: completed weeks plus days (`10+3` = 10周3天)."""

    weeks: int = Field(description="孕周（整周） completed weeks, 0–45")
    days: int = Field(0, description="天 days beyond the completed weeks, 0–6")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            try:
                ga = _split(data)
            except ValueError as exc:
                raise PydanticCustomError("gestational_age", str(exc)) from None
            return {"weeks": ga[0], "days": ga[1]}
        if isinstance(data, int) and not isinstance(data, bool):
            return {"weeks": data, "days": 0}
        return data

    @model_validator(mode="after")
    def _in_range(self) -> GestationalAge:
        if not 0 <= self.weeks <= MAX_WEEKS:
            raise PydanticCustomError(
                "gestational_age",
                f"{self.weeks} weeks is outside the plausible gestational age 0–{MAX_WEEKS} weeks",
            )
        if not 0 <= self.days <= 6:
            raise PydanticCustomError("gestational_age", f"{self.days} days is not 0–6 (7 days make a week)")
        return self

    @property
    def total_days(self) -> int:
        """Days since the first day of the last menstrual period."""
        return self.weeks * 7 + self.days

    def __str__(self) -> str:
        return f"{self.weeks}+{self.days}"


def _split(text: str) -> tuple[int, int]:
    m = _GA_TEXT.match(unicodedata.normalize("NFKC", text))  # full-width １０＋３ too
    if not m:
        raise ValueError(f"{text!r} is not a gestational age; expected weeks+days such as 10+3 or 10周3天")
    return int(m.group("weeks")), int(m.group("days") or m.group("days2") or 0)


def parse_gestational_age(text: str) -> GestationalAge:
    """`10+3`, `10+3周`, `10周+3天`, `10周3天`, `10w3d`, `16周`, `１０＋３` → GestationalAge.

    Raises ValueError with a sentence naming the text when it is not a gestational age
    or is out of range (weeks 0–45, days 0–6).
    """
    weeks, days = _split(text)
    if not 0 <= weeks <= MAX_WEEKS:
        raise ValueError(f"{weeks} weeks is outside the plausible gestational age 0–{MAX_WEEKS} weeks")
    if days > 6:
        raise ValueError(f"{days} days is not 0–6 (7 days make a week)")
    return GestationalAge(weeks=weeks, days=days)
