"""Gestational age (孕周) as weeks + days, the way Chinese forms write it (`10+3` = 10周3天).

Kept as two integers rather than a float of weeks so that `12+6` and `13+0` never round
into each other: the schedule (first visit before 13 weeks, 16–24, 28–40) depends on it.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from transforms.derived import MAX_GESTATION_WEEKS, check_gestational_age
from transforms.derived import parse_gestational_age as parse_weeks_days
from transforms.records.base import ValueModel

__all__ = ["MAX_WEEKS", "GestationalAge", "parse_gestational_age"]

MAX_WEEKS = MAX_GESTATION_WEEKS


class GestationalAge(ValueModel):
    """孕周 gestational age: completed weeks plus days (`10+3` = 10周3天)."""

    weeks: int = Field(description="孕周（整周） completed weeks, 0–45")
    days: int = Field(0, description="天 days beyond the completed weeks, 0–6")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            try:
                weeks, days = parse_weeks_days(data)
            except ValueError as exc:
                raise PydanticCustomError("gestational_age", str(exc)) from None
            return {"weeks": weeks, "days": days}
        if isinstance(data, int) and not isinstance(data, bool):
            return {"weeks": data, "days": 0}
        return data

    @model_validator(mode="after")
    def _in_range(self) -> GestationalAge:
        try:
            check_gestational_age(self.weeks, self.days, f"{self.weeks}+{self.days}")
        except ValueError as exc:
            raise PydanticCustomError("gestational_age", str(exc)) from None
        return self

    @property
    def total_days(self) -> int:
        """Days since the first day of the last menstrual period."""
        return self.weeks * 7 + self.days

    def __str__(self) -> str:
        return f"{self.weeks}+{self.days}"


def parse_gestational_age(text: str) -> GestationalAge:
    """`10+3`, `12周4日`, `39周+2`, `39w2d`, `16周`, `１０＋３` → GestationalAge.

    The model form of `transforms.derived.parse_gestational_age` (the one parser); raises its
    ValueError when the text is not a gestational age or is out of range (weeks 0–45, days 0–6).
    """
    weeks, days = parse_weeks_days(text)
    return GestationalAge(weeks=weeks, days=days)
