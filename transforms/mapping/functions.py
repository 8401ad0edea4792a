"""Derived values a mapping computes at mapping time (`derive: NAME, args: {...}`).

Arguments are named in the mapping (`args: {birth: PID-7, at: OBR-7}`; not `on:`,
which YAML reads as true). They arrive as the mapping read them: HL7 dates (`20241008`), ISO dates
(`2024-10-08`), numbers or numeric text. Each function says in its ValueError
which argument was wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any


def as_date(value: Any, name: str) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value or "").strip()
    try:
        if len(text) >= 8 and text[:8].isdigit():
            return date(int(text[:4]), int(text[4:6]), int(text[6:8]))
        return date.fromisoformat(text[:10])
    except ValueError:
        raise ValueError(f"{name}: {value!r} is not a date") from None


def as_number(value: Any, name: str) -> float | None:
    if value in (None, ""):
        return None
    if isinstance(value, dict) and "value" in value:
        value = value["value"]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: {value!r} is not a number") from None


def age_in_months(birth: Any, at: Any) -> int:
    from transforms.derived import age_in_months as months

    return months(as_date(birth, "birth"), as_date(at, "at"))


def age_in_days(birth: Any, at: Any) -> int:
    return (as_date(at, "at") - as_date(birth, "birth")).days


def gestational_age_at(lmp: Any, at: Any) -> dict[str, int]:
    from transforms.derived import gestational_age_at as ga

    weeks, days = ga(as_date(lmp, "lmp"), as_date(at, "at"))
    return {"weeks": weeks, "days": days}


def edd_from_lmp(lmp: Any) -> str:
    from transforms.derived import edd_from_lmp as edd

    return edd(as_date(lmp, "lmp")).isoformat()


def bmi(weight_kg: Any, height_cm: Any) -> float | None:
    weight, height = as_number(weight_kg, "weight_kg"), as_number(height_cm, "height_cm")
    if weight is None or not height:
        return None
    return round(weight / (height / 100) ** 2, 1)


def growth(
    sex: Any,
    birth: Any,
    at: Any,
    weight_kg: Any = None,
    length_cm: Any = None,
    head_cm: Any = None,
    measured_lying: Any = None,
    lying_before_months: Any = None,
) -> dict[str, Any]:
    """WHO z-scores and labels for a child check (see transforms/growth.py); the position is
    the form's (``measured_lying``) or the site's practice by age (``lying_before_months``)."""
    from transforms.growth import growth_assessment

    return growth_assessment(
        str(sex),
        age_in_days(birth, at),
        weight_kg=as_number(weight_kg, "weight_kg"),
        length_cm=as_number(length_cm, "length_cm"),
        head_cm=as_number(head_cm, "head_cm"),
        measured_lying=_measured_lying(measured_lying, birth, at, lying_before_months),
    )


def _measured_lying(sent: Any, birth: Any, at: Any, lying_before_months: Any) -> bool | None:
    from transforms.growth import measured_lying_from

    site = as_number(lying_before_months, "lying_before_months")
    months = age_in_months(birth, at) if site is not None else None
    return measured_lying_from(sent, months, None if site is None else int(site))


def measurement_position(
    birth: Any, at: Any, length_cm: Any = None, lying_before_months: Any = None
) -> str | None:
    """测量体位 by the site's practice when the form does not say: lying before
    ``lying_before_months`` completed months (36 in Chinese child-health practice)."""
    if as_number(length_cm, "length_cm") is None:
        return None
    lying = _measured_lying(None, birth, at, lying_before_months)
    return None if lying is None else "recumbent" if lying else "standing"


FUNCTIONS: dict[str, Callable[..., Any]] = {
    "age_in_months": age_in_months,
    "age_in_days": age_in_days,
    "gestational_age_at": gestational_age_at,
    "edd_from_lmp": edd_from_lmp,
    "bmi": bmi,
    "growth": growth,
    "measurement_position": measurement_position,
}
