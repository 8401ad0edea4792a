"""Pregnancy episodes: from conception to 42 days after delivery, as a woman's records show them.

A rule about "a registered pregnant woman" needs to know which of her records belong to
which pregnancy. An episode starts at her LMP (or the registration date less the
gestational age, or less 13 weeks when neither is known, since booking targets the first
trimester) and ends 42 days after the delivery that follows it, at the closing of the
registration, or at the next registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from transforms.rules.history import History, StoredRecord, as_date

__all__ = ["POSTPARTUM_DAYS", "Episode", "episodes", "gestational_days"]

POSTPARTUM_DAYS = 42
_BOOKING_FALLBACK = timedelta(weeks=13)


@dataclass(frozen=True)
class Episode:
    """One pregnancy: its registration, the days it covers, and its delivery when known."""

    registration: StoredRecord
    start: date
    end: date | None
    delivery: StoredRecord | None = None

    def covers(self, day: date | None) -> bool:
        return day is not None and self.start <= day and (self.end is None or day <= self.end)

    @property
    def lmp(self) -> date:
        return self.start

    def gestational_days(self, day: date) -> int:
        return (day - self.start).days


def gestational_days(payload: dict[str, Any]) -> int | None:
    """Days of a stored `gestational_age` ({weeks, days}), or None."""
    ga = payload.get("gestational_age")
    if isinstance(ga, dict) and isinstance(ga.get("weeks"), int):
        return int(ga["weeks"]) * 7 + int(ga.get("days") or 0)
    return None


def _start(registration: StoredRecord) -> date | None:
    payload = registration.payload
    lmp = as_date(payload.get("lmp"))
    if lmp is not None:
        return lmp
    if registration.day is None:
        return None
    ga = gestational_days(payload)
    return registration.day - (timedelta(days=ga) if ga is not None else _BOOKING_FALLBACK)


def _closed_on(payload: dict[str, Any]) -> date | None:
    if payload.get("status") != "closed" or payload.get("close_reason") == "delivered":
        return None
    return as_date(payload.get("closed_date"))


def episodes(history: History) -> list[Episode]:
    """Her pregnancies, oldest first; one per registration that can be dated."""
    registrations = sorted(
        ((start, r) for r in history.of_type("PregnancyRegistration") if (start := _start(r))),
        key=lambda pair: pair[0],
    )
    deliveries = sorted((r for r in history.of_type("DeliveryRecord") if r.day), key=lambda r: r.day)
    found: list[Episode] = []
    for i, (start, registration) in enumerate(registrations):
        next_start = registrations[i + 1][0] if i + 1 < len(registrations) else None
        delivery = next(
            (d for d in deliveries if d.day and start <= d.day and (not next_start or d.day < next_start)),
            None,
        )
        ends = [
            delivery.day + timedelta(days=POSTPARTUM_DAYS) if delivery and delivery.day else None,
            _closed_on(registration.payload),
            next_start - timedelta(days=1) if next_start else None,
        ]
        end = min((e for e in ends if e is not None), default=None)
        found.append(Episode(registration, start, end, delivery))
    return found
