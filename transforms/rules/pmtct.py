"""PMTCT follow-up cases (预防母婴传播随访个案) derived from a woman's stored records.

`pmtct_cases(history, schedule, as_of)` returns one `PmtctCase` payload per infection and
pregnancy episode in which she has a positive or reactive result: opened provisional by a
preliminary result (OBX-11 P), open by a final or corrected one, closed when the result that
opened it is corrected to negative. The schedule (`mappings/rules/pmtct.yaml`) gives the test
codes that open a case and each follow-up item's window and how it is marked done.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from transforms.records import RECORD_TYPES, PersonRef
from transforms.records.base import HOSPITAL_TZ, parse_yes_no
from transforms.records.pmtct import Infection, PmtctCase
from transforms.rules.episodes import Episode, episodes
from transforms.rules.history import History, StoredRecord, as_date, derived_id
from transforms.rules.observations import observations_in, reads_positive
from transforms.rules.tables import TableModel, known_record_type, read_table

__all__ = ["Offset", "PmtctSchedule", "load_pmtct_schedule", "pmtct_cases"]

_OFFSET = re.compile(r"^\s*(\d+)\s*([hdwm])\s*$")


@dataclass(frozen=True)
class Offset:
    """A time after an anchor: hours, days, weeks or calendar months (`6h`, `2d`, `6w`, `3m`)."""

    amount: int
    unit: Literal["h", "d", "w", "m"]

    def after(self, anchor: date | datetime) -> date:
        """The day `anchor` plus this offset falls on, in the hospital's time zone."""
        if isinstance(anchor, datetime):
            local = anchor.astimezone(HOSPITAL_TZ) if anchor.tzinfo else anchor
            if self.unit == "h":
                return (local + timedelta(hours=self.amount)).date()
            anchor = local.date()
        if self.unit == "h":
            return anchor + timedelta(days=self.amount // 24)
        if self.unit == "m":
            return _add_months(anchor, self.amount)
        return anchor + timedelta(days=self.amount * (7 if self.unit == "w" else 1))

    @property
    def days(self) -> float:
        """Rough length in days, to compare offsets."""
        return self.amount * {"h": 1 / 24, "d": 1, "w": 7, "m": 30.4375}[self.unit]

    def __str__(self) -> str:
        return f"{self.amount}{self.unit}"


def _add_months(day: date, months: int) -> date:
    """Calendar months on; a missing day is the month's last (31 Jan + 1 month = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    last = (date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)).day
    return date(year, month, min(day.day, last))


def _offset(value: Any) -> Any:
    if isinstance(value, Offset):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and value == 0:
        return Offset(0, "d")
    match = _OFFSET.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(
            f"{value!r} is not an offset; write 0, 6h, 2d, 6w or 3m (hours, days, weeks, months)"
        )
    return Offset(int(match.group(1)), match.group(2))  # type: ignore[arg-type]


OffsetValue = Annotated[Offset, BeforeValidator(_offset)]
Codes = Annotated[
    tuple[str, ...], BeforeValidator(lambda v: [str(c) for c in v] if isinstance(v, list) else v)
]
"""Observation codes; a number-like code written bare in YAML (`- 5196`) is kept as text."""


class DoneWhen(TableModel):
    """A record that marks an item done: an observation with one of `codes`, or a true `field`."""

    record_type: str
    codes: Codes = ()
    field: str | None = None
    time_field: str | None = None

    @field_validator("record_type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return known_record_type(value)

    @model_validator(mode="after")
    def _one_way(self) -> DoneWhen:
        if bool(self.codes) == bool(self.field):
            raise ValueError("give either codes or field, not both or neither")
        model = RECORD_TYPES[self.record_type]
        for name in (self.field, self.time_field):
            if name and name not in model.model_fields:
                raise ValueError(f"{self.record_type} has no field {name!r}")
        return self


class ScheduleItem(TableModel):
    """One follow-up item of the schedule."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    name: str = Field(min_length=1)
    who: Literal["mother", "infant"]
    relative_to: Literal["birth", "opened"]
    due_from: OffsetValue
    due_by: OffsetValue
    done_when: tuple[DoneWhen, ...] = Field(min_length=1)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _window(self) -> ScheduleItem:
        if self.due_by.days < self.due_from.days:
            raise ValueError(f"due_by {self.due_by} is before due_from {self.due_from}")
        if self.relative_to == "opened" and "h" in (self.due_from.unit, self.due_by.unit):
            raise ValueError("hours count only from the birth time; use days after `opened`")
        return self


class InfectionRules(TableModel):
    """The codes that open a case for one infection, and its follow-up items."""

    name: str = Field(min_length=1)
    opening_codes: Codes = Field(min_length=1)
    items: tuple[ScheduleItem, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> InfectionRules:
        ids = [i.id for i in self.items]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"item ids repeat: {', '.join(twice)}")
        return self


class PmtctSchedule(TableModel):
    """The whole schedule file."""

    kind: Literal["pmtct_schedule"]
    version: str = Field(min_length=1)
    source: str = Field(min_length=1)
    follow_up_after_delivery: OffsetValue
    infections: dict[Infection, InfectionRules] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value


def load_pmtct_schedule(path: str | Path) -> PmtctSchedule:
    """The schedule file, validated; problems raise ConfigError/ConfigErrors with file:line."""
    return read_table(Path(path), PmtctSchedule)


# --------------------------------------------------------------------------- dates


def _time(value: Any) -> datetime | None:
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class _Reading:
    record: StoredRecord
    obs: dict[str, Any]
    positive: bool | None
    preliminary: bool


def _readings(history: History, codes: tuple[str, ...]) -> list[_Reading]:
    found = []
    for record in history.of_type("LabResult"):
        for obs in observations_in(record, codes):
            status = str(obs.get("status") or record.payload.get("report_status") or "F").upper()
            found.append(_Reading(record, obs, reads_positive(obs), status == "P"))
    return found


def _value_text(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("display") or value.get("code") or "")
    if isinstance(value, list):
        return " ".join(_value_text(v) for v in value)
    if isinstance(value, float | int) and not isinstance(value, bool):
        return f"{value:g}"
    return str(value)


def _ref(record: StoredRecord, obs: dict[str, Any]) -> dict[str, Any]:
    value = obs.get("value")
    text = None if value is None else f"{_value_text(value)} {obs.get('unit') or ''}".strip()
    ref = {
        "record_type": record.record_type,
        "record_id": record.record_id,
        "code": obs.get("code"),
        "name": obs.get("name"),
        "value": text,
    }
    return {k: v for k, v in ref.items() if v is not None}


# --------------------------------------------------------------------------- items


def _birth_of(child: History) -> datetime | None:
    for record in child.of_type("NewbornRecord"):
        born = _time(record.payload.get("birth_time"))
        if born is not None:
            return born
    return None


def _done_by(record: StoredRecord, rule: DoneWhen) -> date | None:
    """The day `record` marks an item done by `rule`, or None when it does not."""
    if record.record_type != rule.record_type:
        return None
    if rule.field:
        if record.payload.get(rule.field) is not True:
            return None
        return (as_date(record.payload.get(rule.time_field)) if rule.time_field else None) or record.day
    for obs in observations_in(record, rule.codes):
        if obs.get("status") == "X":
            continue
        try:
            if parse_yes_no(obs.get("value")) is False:
                continue  # 未接种, 否: recorded as not given
        except PydanticCustomError:
            pass  # a result or a drug name: the item was done
        return record.day
    return None


_Pairs = list[tuple[ScheduleItem, dict[str, Any]]]


def _mark(items: _Pairs, records: list[StoredRecord]) -> None:
    """Each matching record marks, among the items done the same way (the 48 h, 6 week and
    3 month tests), the one whose window it falls in: the latest whose due_from is on or
    before the record's day (a late 48 h test still counts for 48 h, not for 6 weeks); the
    earliest record wins."""
    kinds: dict[tuple[DoneWhen, ...], list[dict[str, Any]]] = {}
    for spec, item in items:
        kinds.setdefault(spec.done_when, []).append(item)
    for record in sorted(records, key=lambda r: r.day or date.min):
        for rules, same in kinds.items():
            done_on = next((d for rule in rules if (d := _done_by(record, rule)) is not None), None)
            if done_on is None:
                continue
            started = [i for i in same if i.get("due_from") is not None and i["due_from"] <= done_on]
            if not started:
                continue
            item = max(started, key=lambda i: i["due_from"])
            if item["status"] == "pending":
                item.update(status="done", done_on=done_on, done_record_id=record.record_id)


def _item(spec: ScheduleItem, anchor: date | datetime | None, **extra: Any) -> dict[str, Any]:
    item: dict[str, Any] = {"id": spec.id, "name": spec.name, "who": spec.who, "status": "pending", **extra}
    if anchor is not None:
        item.update(due_from=spec.due_from.after(anchor), due_by=spec.due_by.after(anchor))
    return item


def _certificate(child: History) -> str | None:
    found = (child.person or {}).get("birth_certificate_no")
    for record in reversed(child.records):
        found = found or (record.payload.get("person") or {}).get("birth_certificate_no")
    return found


def _items(
    rules: InfectionRules, history: History, episode: Episode, opened_on: date
) -> list[dict[str, Any]]:
    delivered = _time(episode.delivery.payload.get("delivery_time")) if episode.delivery else None

    def anchor(spec: ScheduleItem, birth: datetime | None) -> date | datetime | None:
        return opened_on if spec.relative_to == "opened" else birth

    mother: _Pairs = [(s, _item(s, anchor(s, delivered))) for s in rules.items if s.who == "mother"]
    _mark(mother, [r for r in history.records if r.day is not None and r.day >= episode.start])

    last = (episode.delivery.day if episode.delivery and episode.delivery.day else episode.end) + timedelta(
        days=2
    )
    children = [
        c for c in history.children
        if (born := _birth_of(c)) is not None and episode.start <= born.astimezone(HOSPITAL_TZ).date() <= last
    ]  # fmt: skip
    infants: list[dict[str, Any]] = []
    for number, kid in enumerate(children or [None], start=1):
        extra: dict[str, Any] = {}
        birth = delivered
        if kid is not None:
            birth = _birth_of(kid)
            extra = {"infant_key": kid.person_key, "infant_birth_certificate_no": _certificate(kid)}
        suffix = f"_{number}" if len(children) > 1 else ""  # twins: one set of items each
        own: _Pairs = [
            (s, _item(s, anchor(s, birth), **extra) | {"id": s.id + suffix})
            for s in rules.items
            if s.who == "infant"
        ]
        if kid is not None:
            _mark(own, list(kid.records))
        infants += [item for _, item in own]
    return [item for _, item in mother] + infants


# --------------------------------------------------------------------------- cases


_PERSON_FIELDS = set(PersonRef.model_fields)


def _person(history: History) -> dict[str, Any] | None:
    """Her identifiers: the person row's, else her newest record's."""
    row = {k: v for k, v in (history.person or {}).items() if k in _PERSON_FIELDS and v not in (None, "")}
    if row:
        return row
    for record in reversed(history.records):
        person = record.payload.get("person")
        if isinstance(person, dict) and person:
            return {k: v for k, v in person.items() if k in _PERSON_FIELDS}
    return None


def _case_id(person_key: str, infection: str, start: date) -> str:
    return derived_id("pmtct", person_key, infection, start.isoformat())


def _earlier(history: History, infection: str, episode: Episode, wanted_id: str) -> StoredRecord | None:
    """The case stored for this infection and episode by an earlier evaluation, if any."""
    cases = [c for c in history.of_type("PmtctCase") if c.payload.get("infection") == infection]
    exact = next((c for c in cases if c.record_id == wanted_id), None)
    if exact is not None:
        return exact
    # The episode's start moved (a registration arrived after the delivery): the same case.
    last = episode.delivery.day if episode.delivery and episode.delivery.day else episode.end
    return next(
        (c for c in cases if episode.start <= (as_date(c.payload.get("episode_start")) or date.min) <= last),
        None,
    )


def _case(
    history: History, schedule: PmtctSchedule, infection: Infection, episode: Episode, as_of: date
) -> dict[str, Any] | None:
    rules = schedule.infections[infection]
    readings = [
        r for r in _readings(history, rules.opening_codes)
        if r.record.day is not None and episode.start <= r.record.day <= episode.end
    ]  # fmt: skip
    positive = sorted((r for r in readings if r.positive), key=lambda r: r.record.day or date.min)
    case_id = _case_id(history.person_key, infection, episode.start)
    earlier = _earlier(history, infection, episode, case_id)
    closing: dict[str, Any] = {}
    if positive:
        first = positive[0]
        opened_by, opened_on = _ref(first.record, first.obs), first.record.day or as_of
        status = "provisional" if all(r.preliminary for r in positive) else "open"
        if earlier is not None:
            case_id = earlier.record_id
            # A final report replaces its preliminary one under the same record id: the case
            # still dates from the first reactive result anyone saw.
            seen_before = as_date(earlier.payload.get("opened_on"))
            if seen_before is not None and seen_before < opened_on:
                opened_on = seen_before
    elif earlier is not None:
        # The positive is gone: a correction replaced it under the same record id.
        previous = earlier.payload
        case_id, opened_by = earlier.record_id, previous["opened_by"]
        opened_on = as_date(previous.get("opened_on")) or episode.start
        status = str(previous.get("status") or "open")
        corrected = next(
            (r for r in _readings(history, (str(opened_by.get("code") or ""),))
             if r.record.record_id == opened_by.get("record_id") and r.positive is False),
            None,
        )  # fmt: skip
        if corrected is not None:
            status = "closed"
            closing = {
                "close_reason": "corrected_negative",
                "closed_by": _ref(corrected.record, corrected.obs),
                "closed_on": corrected.record.day or as_of,
            }
        elif status == "closed":
            closing = {k: previous[k] for k in ("close_reason", "closed_by", "closed_on") if k in previous}
    else:
        return None
    case = {
        "record_type": "PmtctCase",
        "record_id": case_id,
        "person": _person(history),
        "infection": infection,
        "status": status,
        **closing,
        "opened_on": opened_on,
        "opened_by": opened_by,
        "episode_start": episode.start,
        "delivery_date": episode.delivery.day if episode.delivery else None,
        "items": _items(rules, history, episode, opened_on),
        "as_of": as_of,
        "schedule_version": schedule.version,
        "audience": "pmtct_officer",
    }
    return PmtctCase.model_validate(case).model_dump(mode="json", exclude_none=True)


def pmtct_cases(history: History, schedule: PmtctSchedule, as_of: date) -> list[dict[str, Any]]:
    """The PMTCT cases her records call for, as canonical PmtctCase payloads (oldest first).

    One per infection per pregnancy episode with a positive or reactive opening test; a case
    stored earlier whose opening result now reads negative comes back closed."""
    cases = []
    for episode in episodes(history, schedule.follow_up_after_delivery.after):
        for infection in schedule.infections:
            case = _case(history, schedule, infection, episode, as_of)
            if case is not None:
                cases.append(case)
    return cases
