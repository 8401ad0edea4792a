"""Suggested five-colour risk grading (妊娠风险评估) from a rule table, over a woman's records.

The table (`mappings/rules/risk_five_colour.yaml`) names facts — where a value comes from
(a record field, or lab and form observations by code) — and factors — a fact, a threshold,
a colour and the document the line comes from. A province's variant is another table.

For each day of a pregnancy on which something was recorded, the facts are read as of that
day (the latest number; a positive result counts from when it was seen) and the factors
that hold are collected; a dated `RiskAssessment` with `method: suggested` is written for
the first such day and for every day on which the suggestion, or how it compares with the
latest clinical grading, changes. So the stored suggestions are a pure function of the
history: the same records in any order give the same assessments.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from core.yaml_lines import Loc, hint
from transforms.records.base import parse_yes_no
from transforms.records.pregnancy import COLOURS, highest_colour
from transforms.rules.episodes import Episode, episodes
from transforms.rules.history import History, StoredRecord, as_date, derived_id
from transforms.rules.observations import by_code, number_of, reads_positive
from transforms.rules.tables import TableModel, known_record_type, read_table

__all__ = ["RiskTable", "load_risk_table", "suggest_assessments"]

FactKind = Literal["number", "positive", "yes_no", "age_at_registration", "bmi_at_registration"]
FactorColour = Literal["yellow", "orange", "red", "purple"]
_BUILT_IN = ("age_at_registration", "bmi_at_registration")
_DERIVED_TYPES = ("RiskAssessment", "PmtctCase")


class FactSource(TableModel):
    """Where one fact is read: a field of a record type, or observations by code."""

    record: str = Field(description="record type, e.g. LabResult")
    field: str | None = Field(None, description="dotted field path, e.g. blood_pressure.systolic")
    codes: list[str] = Field(default_factory=list, description="observation codes (local or LOINC)")

    @field_validator("record")
    @classmethod
    def _known_type(cls, value: str) -> str:
        return known_record_type(value)

    @model_validator(mode="after")
    def _one_way(self) -> FactSource:
        if (self.field is None) == (not self.codes):
            raise ValueError("give either `field` or `codes`, not both and not neither")
        return self


class Fact(TableModel):
    """A value the factors test: its name, unit, kind and the places it is read from."""

    name: str = Field(min_length=1)
    unit: str | None = None
    kind: FactKind = "number"
    from_: list[FactSource] = Field(default_factory=list, alias="from")

    @model_validator(mode="after")
    def _has_sources(self) -> Fact:
        if self.kind not in _BUILT_IN and not self.from_:
            raise ValueError(f"a {self.kind} fact needs `from:` (where it is read)")
        return self


class Test(TableModel):
    """A threshold on one fact: bounds for a number, `present: true` for positive/yes_no facts."""

    fact: str
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    present: bool | None = None

    def holds(self, value: float | bool) -> bool:
        if self.present is not None:
            return bool(value) is self.present
        if isinstance(value, bool):
            return False
        return not (
            (self.ge is not None and value < self.ge)
            or (self.gt is not None and value <= self.gt)
            or (self.le is not None and value > self.le)
            or (self.lt is not None and value >= self.lt)
        )

    @property
    def has_bounds(self) -> bool:
        return any(b is not None for b in (self.ge, self.gt, self.le, self.lt))


class Factor(Test):
    """One line of the table: a risk factor, its colour and the document it comes from."""

    id: str = Field(min_length=1, pattern=r"^[a-z0-9_]+$")
    colour: FactorColour
    name: str = Field(min_length=1)
    source: str
    fact: str = ""
    any: list[Test] = Field(default_factory=list)

    def tests(self) -> list[Test]:
        return self.any or [self]


class RiskTable(TableModel):
    """A rule table: which version it is, what it cites, its facts and its factors."""

    kind: Literal["risk_grading"]
    rule_set: str = Field(min_length=1)
    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    sources: dict[str, str]
    facts: dict[str, Fact]
    factors: list[Factor] = Field(min_length=1)

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    def problems(self) -> list[tuple[Loc, str]]:
        found: list[tuple[Loc, str]] = []
        seen: set[str] = set()
        for i, factor in enumerate(self.factors):
            at: Loc = ("factors", i)
            if factor.id in seen:
                found.append(((*at, "id"), f"factor id {factor.id!r} appears twice"))
            seen.add(factor.id)
            if factor.source not in self.sources:
                found.append(((*at, "source"), f"{factor.source!r} is not under `sources:`"))
            if bool(factor.fact) == bool(factor.any):
                found.append((at, "give either `fact:` or `any:`"))
                continue
            tests = [((*at, "any", j), t) for j, t in enumerate(factor.any)] or [(at, factor)]
            found += [(loc, message) for loc, test in tests for message in self._test_problems(test)]
        return found

    def _test_problems(self, test: Test) -> list[str]:
        fact = self.facts.get(test.fact)
        if fact is None:
            return [f"fact {test.fact!r} is not under `facts:`{hint(test.fact, self.facts)}"]
        flag_kind = fact.kind in ("positive", "yes_no")
        if flag_kind and (test.present is None or test.has_bounds):
            return [f"{fact.kind} fact {test.fact} takes `present: true`, not bounds"]
        if not flag_kind and (test.present is not None or not test.has_bounds):
            return [f"number fact {test.fact} takes bounds (ge, gt, le, lt)"]
        return []

    @property
    def label(self) -> str:
        return f"{self.rule_set} {self.version}"


def load_risk_table(path: str | Path) -> RiskTable:
    """The table at `path`; raises ConfigError(s) with file and line for every mistake."""
    return read_table(Path(path), RiskTable)


# --------------------------------------------------------------------------- reading facts


@dataclass(frozen=True)
class Reading:
    """One value of a fact, with the record and observation it was read from."""

    value: float | bool
    day: date
    record: StoredRecord
    code: str | None = None
    name: str | None = None
    text: str | None = None


def _at_path(payload: dict[str, Any], path: str) -> Any:
    value: Any = payload
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    if isinstance(value, dict) and "value" in value:
        return value["value"]
    return value


def _yes(value: Any) -> bool | None:
    try:
        found = parse_yes_no(value)
    except ValueError:
        return None
    return found if isinstance(found, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _readings(fact: Fact, record: StoredRecord, coded: dict[str, list[dict[str, Any]]]) -> Iterator[Reading]:
    """`coded`: the record's observations by code (`by_code`)."""
    if record.day is None:
        return
    for source in fact.from_:
        if source.record != record.record_type:
            continue
        if source.field is not None:
            raw = _at_path(record.payload, source.field)
            value = _number(raw) if fact.kind == "number" else _yes(raw)
            if value is not None:
                yield Reading(value, record.day, record, source.field, fact.name, _shown(raw, fact.unit))
            continue
        matching = {id(o): o for code in source.codes for o in coded.get(code.upper(), ())}
        for obs in matching.values():
            if fact.kind == "number":
                value = number_of(obs)
            elif fact.kind == "positive":
                value = reads_positive(obs)
            else:
                value = _yes(obs.get("value"))
            if value is not None:
                day = as_date(obs.get("observed_at")) or record.day
                shown = _shown(obs.get("value"), obs.get("unit") if fact.kind == "number" else None)
                yield Reading(value, day, record, obs.get("code"), obs.get("name") or fact.name, shown)


def _shown(value: Any, unit: str | None) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return f"{text} {unit}" if unit else text


def _age(episode: Episode, person: dict[str, Any]) -> Reading | None:
    reg = episode.registration
    born = as_date((reg.payload.get("person") or {}).get("birth_date")) or as_date(person.get("birth_date"))
    if born is None or reg.day is None:
        return None
    years = reg.day.year - born.year - ((reg.day.month, reg.day.day) < (born.month, born.day))
    return Reading(float(years), reg.day, reg, "age", "建册年龄", f"{years} 岁")


def _bmi(episode: Episode) -> Reading | None:
    """Pre-pregnancy BMI, or the booking BMI when the form has no pre-pregnancy weight."""
    reg = episode.registration
    height = _number(_at_path(reg.payload, "height"))
    weight = _number(_at_path(reg.payload, "pre_pregnancy_weight"))
    weight = weight or _number(_at_path(reg.payload, "weight"))
    if not height or not weight or reg.day is None:
        return None
    bmi = round(weight / (height / 100) ** 2, 1)
    return Reading(bmi, reg.day, reg, "bmi", "BMI", f"{bmi:g} kg/m²")


class _Facts:
    """Every reading of every fact in one episode, oldest first, read in one pass over her
    records (a fact is looked for only in the record types it names)."""

    def __init__(self, table: RiskTable, episode: Episode, history: History, records: list[StoredRecord]):
        by_type: dict[str, list[tuple[str, Fact]]] = {}
        for key, fact in table.facts.items():
            for kind in dict.fromkeys(source.record for source in fact.from_):
                by_type.setdefault(kind, []).append((key, fact))
        found: dict[str, list[Reading]] = {key: [] for key in table.facts}
        for record in records:
            wanted = by_type.get(record.record_type)
            if wanted:
                coded = by_code(record)
                for key, fact in wanted:
                    found[key].extend(_readings(fact, record, coded))
        for key, fact in table.facts.items():
            if fact.kind == "age_at_registration":
                found[key] = [r for r in [_age(episode, history.person)] if r]
            elif fact.kind == "bmi_at_registration":
                found[key] = [r for r in [_bmi(episode)] if r]
            found[key].sort(key=lambda r: r.day)  # stable: records are in stored order
        self.readings = found
        self._days = {key: [r.day for r in readings] for key, readings in found.items()}
        self._first_yes = {
            key: next((r for r in readings if r.value is True), None)
            for key, readings in found.items()
            if table.facts[key].kind in ("positive", "yes_no")
        }

    def as_of(self, key: str, day: date) -> Reading | None:
        """The latest number, or the first positive or yes, recorded up to `day`."""
        if key in self._first_yes:
            first = self._first_yes[key]
            return first if first is not None and first.day <= day else None
        seen = bisect_right(self._days[key], day)
        return self.readings[key][seen - 1] if seen else None


# --------------------------------------------------------------------------- grading


@dataclass(frozen=True)
class _Clinical:
    colour: str | None
    purple: bool
    record_id: str


def _clinical_gradings(records: list[StoredRecord]) -> list[tuple[date, _Clinical]]:
    """Every grading a clinician recorded (registration, visit, manual assessment), by day."""
    found: list[tuple[date, _Clinical]] = []
    for record in records:
        payload = record.payload
        if record.record_type == "RiskAssessment":
            grade = payload if payload.get("method") != "suggested" else None
        else:
            grade = payload.get("risk") if isinstance(payload.get("risk"), dict) else None
        if grade and record.day:
            graded = _Clinical(grade.get("colour"), bool(grade.get("purple")), record.record_id)
            found.append((record.day, graded))
    return sorted(found, key=lambda pair: pair[0])


def _rank(colour: str | None) -> int:
    return COLOURS.index(colour) if colour in COLOURS else -1  # type: ignore[arg-type]


def _factor_entry(factor: Factor, reading: Reading, table: RiskTable) -> dict[str, Any]:
    return {
        "description": factor.name,
        "colour": factor.colour,
        "code": {"code": factor.id, "system": table.rule_set, "display": table.sources[factor.source]},
        "source_observation": {
            "record_type": reading.record.record_type,
            "record_id": reading.record.record_id,
            "code": reading.code,
            "name": reading.name,
            "value": reading.text,
        },
    }


def _fired(table: RiskTable, facts: _Facts, day: date) -> list[tuple[Factor, Reading]]:
    fired = []
    for factor in table.factors:
        for test in factor.tests():
            reading = facts.as_of(test.fact, day)
            if reading is not None and test.holds(reading.value):
                fired.append((factor, reading))
                break
    return fired


def suggest_assessments(history: History, table: RiskTable) -> list[dict[str, Any]]:
    """The suggested gradings of every pregnancy in `history`, as RiskAssessment payloads."""
    out: list[dict[str, Any]] = []
    inputs = [r for r in history.records if r.record_type not in _DERIVED_TYPES or _is_manual(r)]
    for episode in episodes(history):
        records = [r for r in inputs if episode.covers(r.day)]
        if not records or episode.registration is None:
            continue  # graded from registration on; a delivery alone is not graded
        facts = _Facts(table, episode, history, records)
        clinical = _clinical_gradings(records)
        read_on = {r.day for readings in facts.readings.values() for r in readings}
        days = sorted({r.day for r in records if r.day} | read_on)
        days = [d for d in days if d >= (episode.registration.day or episode.start) and episode.covers(d)]
        last: tuple[Any, ...] | None = None
        for day in days:
            fired = _fired(table, facts, day)
            colour = highest_colour([f.colour for f, _ in fired]) or "green"
            purple = any(f.colour == "purple" for f, _ in fired)
            latest = next((c for d, c in reversed(clinical) if d <= day), None)
            above = latest is None or _rank(colour) > _rank(latest.colour) or (purple and not latest.purple)
            above = above and (colour != "green" or purple)
            compared = (latest.colour, latest.purple) if latest else None
            key = (colour, purple, tuple(f.id for f, _ in fired), above, compared)
            if key == last:
                continue
            last = key
            source = [r for r in records if r.day == day] or [episode.registration]
            grade = _Grade(colour, purple, fired, latest, above)
            out.append(_assessment(history, table, episode, day, grade, source[-1]))
    return out


def _is_manual(record: StoredRecord) -> bool:
    return record.record_type == "RiskAssessment" and record.payload.get("method") != "suggested"


@dataclass(frozen=True)
class _Grade:
    colour: str
    purple: bool
    fired: list[tuple[Factor, Reading]]
    latest: _Clinical | None
    above: bool


def _assessment(
    history: History, table: RiskTable, episode: Episode, day: date, grade: _Grade, source: StoredRecord
) -> dict[str, Any]:
    ga_days = episode.gestational_days(day)
    registration = episode.registration.payload
    latest = grade.latest
    return {
        "record_type": "RiskAssessment",
        "record_id": derived_id("risk", history.person_key, episode.start.isoformat(), day.isoformat()),
        "person": registration.get("person"),
        "assessment_date": day.isoformat(),
        "gestational_age": {"weeks": ga_days // 7, "days": ga_days % 7} if 0 <= ga_days <= 45 * 7 else None,
        "colour": grade.colour,
        "purple": grade.purple,
        "factors": [_factor_entry(f, r, table) for f, r in grade.fired],
        "method": "suggested",
        "rule_set": table.label,
        "source_record_id": source.record_id,
        "clinical_colour": latest.colour if latest else None,
        "clinical_purple": latest.purple if latest else None,
        "clinical_record_id": latest.record_id if latest else None,
        "above_clinical": grade.above,
    }
