"""Rule tables by kind, and the derivers the record store runs for them.

A rule table says what it is in its first key (`kind: risk_grading`); the record store's
`rules:` setting lists tables, and each becomes a `Deriver`: the record types it writes,
the record types whose arrival makes it look again, and the function over a `History`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.yaml_lines import parse_yaml
from transforms.rules.history import History
from transforms.rules.pmtct import load_pmtct_schedule, pmtct_cases
from transforms.rules.risk import load_risk_table, suggest_assessments

__all__ = ["DERIVED_TYPES", "Deriver", "load_deriver", "load_derivers", "table_kind"]

DERIVED_TYPES = ("RiskAssessment", "PmtctCase")
"""Record types the rules write; a suggested RiskAssessment is never an input of a rule."""


@dataclass(frozen=True)
class Deriver:
    """One loaded rule table: what it writes, what wakes it, and how."""

    name: str
    writes: tuple[str, ...]
    triggers: frozenset[str]
    derive: Callable[[History, date], list[dict[str, Any]]]
    mothers_too: bool = False
    """A record of a child also makes it look at the child's mother (PMTCT follows infants)."""


_PREGNANCY_TYPES = frozenset(
    [
        "PregnancyRegistration",
        "PrenatalVisit",
        "RiskAssessment",
        "LabResult",
        "ImagingReport",
        "DeliveryRecord",
    ]
)


_CHILD_TYPES = frozenset(["NewbornRecord", "ChildHealthExam", "PostpartumVisit", "NewbornScreening"])


def _risk(path: Path) -> Deriver:
    table = load_risk_table(path)
    return Deriver(
        name=table.label,
        writes=("RiskAssessment",),
        triggers=_PREGNANCY_TYPES,
        derive=lambda history, _today: suggest_assessments(history, table),
    )


def _pmtct(path: Path) -> Deriver:
    schedule = load_pmtct_schedule(path)
    return Deriver(
        name=f"pmtct {schedule.version}",
        writes=("PmtctCase",),
        triggers=_PREGNANCY_TYPES | _CHILD_TYPES,
        derive=lambda history, today: pmtct_cases(history, schedule, today),
        mothers_too=True,
    )


_LOADERS: dict[str, Callable[[Path], Deriver]] = {"risk_grading": _risk, "pmtct_schedule": _pmtct}


def table_kind(path: Path) -> str:
    """The `kind:` a rule table declares; a ConfigError when it names none we know."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), None, f"cannot read the rule table: {exc}") from None
    parsed = parse_yaml(text, str(path))
    data = parsed.data if isinstance(parsed.data, dict) else {}
    kind = data.get("kind")
    if kind not in _LOADERS:
        known = ", ".join(sorted(_LOADERS))
        raise ConfigError(str(path), parsed.lines.line_of(("kind",)) or 1, f"kind: give one of {known}")
    return str(kind)


def load_deriver(path: Path) -> Deriver:
    """The deriver for one rule table; ConfigError(s) with file and line when it is wrong."""
    return _LOADERS[table_kind(path)](path)


def load_derivers(paths: Iterable[Path]) -> list[Deriver]:
    return [load_deriver(p) for p in paths]
