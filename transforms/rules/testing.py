"""Tests beside the rule tables: `risk_five_colour.yaml` is checked by `risk_five_colour_test.yaml`.

A site that adapts a table writes down, next to it, what its lines must make of a woman's
records — the way mapping tests sit beside mappings:

    rules: risk_five_colour.yaml           # the table (default: this file's name less _test)
    tests:
      - name: anaemia at the second visit
        as_of: 2024-06-01                  # the evaluation day (PMTCT items overdue); default today
        person: {his_id: "0010023456", his_system: HIS, birth_date: 1994-03-15}
        records:                           # her records, as canonical records
          - {type: PregnancyRegistration, record_id: reg-1, registration_date: 2024-03-01, lmp: 2024-01-05}
          - {type: PrenatalVisit, record_id: v-1, visit_date: 2024-04-02, hb: {value: 104, unit: g/L}}
        children:                          # optional: each child's records (PMTCT infant items)
          - person: {his_id: "0010031207", his_system: HIS}
            records: [...]
        expect:                            # every derived record, in order
          - type: RiskAssessment
            fields: {assessment_date: 2024-03-01, colour: green}
          - type: RiskAssessment
            fields: {assessment_date: 2024-04-02, colour: yellow, factors.0.code.code: anaemia}

Each input record is validated by its model first, so a test cannot feed the rules what the
store would refuse. `mch-engine mapping test` runs these files with the mapping tests.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from core.errors import ConfigError, ConfigErrors, InputError
from core.i18n import t
from core.yaml_lines import LineMap
from transforms.mapping.compiler import MappedRecord
from transforms.mapping.testing import CaseResult, compare_record, open_case
from transforms.rules.derivers import load_deriver
from transforms.rules.history import History, StoredRecord
from transforms.validate import canonical

__all__ = ["run_rule_test_file"]

CASE_KEYS = {"name", "as_of", "person", "records", "children", "expect"}


def run_rule_test_file(path: Path, data: dict[str, Any], lines: LineMap) -> list[CaseResult]:
    """Every case of one rule-table test file."""
    table = path.parent / str(data.get("rules") or path.name.replace("_test.yaml", ".yaml"))
    try:
        deriver = load_deriver(table)
    except (ConfigError, ConfigErrors) as exc:
        return [CaseResult(path, getattr(exc, "line", None), "(file)", [str(exc)])]
    cases = data.get("tests")
    if not isinstance(cases, list) or not cases:
        return [CaseResult(path, 1, "(file)", [t("test_needs_cases")])]
    return [_run_case(path, lines, deriver, case, i) for i, case in enumerate(cases)]


def _history(
    key: str, person: dict[str, Any], records: list[Any], children: tuple[History, ...] = ()
) -> History:
    stored = []
    for item in records:
        fields = dict(item)
        kind = str(fields.pop("type"))
        record_id = str(fields.pop("record_id"))
        payload = canonical(kind, record_id, {"person": person, **fields})
        stored.append(StoredRecord.of(payload))
    return History(key, person, tuple(stored), children)


def _run_case(path: Path, lines: LineMap, deriver: Any, case: Any, index: int) -> CaseResult:
    result = open_case(path, lines, case, index, CASE_KEYS)
    if result.problems:
        return result
    try:
        person = dict(case.get("person") or {})
        children = tuple(
            _history(f"child-{i}", dict(c.get("person") or {}), list(c.get("records") or []))
            for i, c in enumerate(case.get("children") or [])
        )
        history = _history("person-under-test", person, list(case.get("records") or []), children)
        as_of = case.get("as_of") or date.today()
        as_of = as_of if isinstance(as_of, date) else date.fromisoformat(str(as_of))
        made = deriver.derive(history, as_of)
    except (ValueError, KeyError, TypeError, InputError) as exc:  # the case's input, said in one line
        result.problems.append(t("test_mapping_failed", error=exc))
        return result
    expect = case.get("expect") or []
    stored = [canonical(r["record_type"], r["record_id"], r) for r in made]  # as the store keeps them
    got = [MappedRecord(r["record_type"], r["record_id"], None, r) for r in stored]
    if len(expect) != len(got):
        kinds = ", ".join(r.record_type for r in got) or "-"
        result.problems.append(t("test_record_count", want=len(expect), n=len(got), kinds=kinds))
    for i, (want, record) in enumerate(zip(expect, got, strict=False)):
        result.problems += [f"records[{i}] {p}" for p in compare_record(want, record)]
    return result
