"""Pregnancy episodes: from conception to the end of follow-up after delivery, as a woman's
records show them.

A rule about "a registered pregnant woman" needs to know which of her records belong to
which pregnancy. An episode starts at her LMP (or the registration date less the
gestational age, or less 13 weeks when neither is known, since booking targets the first
trimester). It ends after the follow-up period (42 days, 产后42天) that follows its
delivery, at the closing of the registration for another reason (miscarriage, moved), or
44 weeks after its start when no delivery has arrived. A registration that starts inside
an earlier episode is the same pregnancy registered again; a delivery without a
registration is an episode of its own, from the delivery less its gestational age.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from transforms.rules.history import History, StoredRecord, as_date

__all__ = ["POSTPARTUM_DAYS", "Episode", "episodes", "gestational_days", "registration_start"]

POSTPARTUM_DAYS = 42
_BOOKING_FALLBACK = timedelta(weeks=13)
_LONGEST = timedelta(weeks=44)
_TERM = timedelta(days=280)


@dataclass
class Episode:
    """One pregnancy: the days it covers, its registration and its delivery when known."""

    start: date
    end: date
    registration: StoredRecord | None = None
    delivery: StoredRecord | None = None

    def covers(self, day: date | None) -> bool:
        return day is not None and self.start <= day <= self.end

    def gestational_days(self, day: date) -> int:
        return (day - self.start).days


def gestational_days(payload: dict[str, Any]) -> int | None:
    """Days of a stored `gestational_age` ({weeks, days}), or None."""
    ga = payload.get("gestational_age")
    if isinstance(ga, dict) and isinstance(ga.get("weeks"), int):
        return int(ga["weeks"]) * 7 + int(ga.get("days") or 0)
    return None


def registration_start(registration: StoredRecord) -> date | None:
    """The first day of the pregnancy a registration opens."""
    payload = registration.payload
    lmp = as_date(payload.get("lmp"))
    if lmp is not None:
        return lmp
    if registration.day is None:
        return None
    ga = gestational_days(payload)
    return registration.day - (timedelta(days=ga) if ga is not None else _BOOKING_FALLBACK)


def _postpartum(day: date) -> date:
    return day + timedelta(days=POSTPARTUM_DAYS)


def episodes(history: History, follow_up: Callable[[date], date] = _postpartum) -> list[Episode]:
    """Her pregnancies, oldest first. `follow_up(delivery day)` is the last day an episode
    lasts after its delivery (42 days unless a rule table says otherwise)."""
    found: list[Episode] = []
    for reg in sorted(history.of_type("PregnancyRegistration"), key=lambda r: r.day or date.min):
        start = registration_start(reg)
        if start is None or (found and start <= found[-1].end):
            continue  # undated, or the same pregnancy registered again
        end = start + _LONGEST
        closed = as_date(reg.payload.get("closed_date"))
        ended_early = reg.payload.get("status") == "closed" and reg.payload.get("close_reason") != "delivered"
        if closed and ended_early:
            end = closed  # miscarriage, moved, lost to follow-up
        found.append(Episode(start, end, registration=reg))
    for delivery in sorted(history.of_type("DeliveryRecord"), key=lambda r: r.day or date.min):
        born = delivery.day
        if born is None:
            continue
        episode = next((e for e in found if e.delivery is None and e.start <= born <= e.end), None)
        if episode is None:
            ga = gestational_days(delivery.payload)
            episode = Episode(born - (timedelta(days=ga) if ga is not None else _TERM), born)
            found.append(episode)
        episode.delivery = delivery
        episode.end = follow_up(born)
    return sorted(found, key=lambda e: e.start)
