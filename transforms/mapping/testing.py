"""Tests beside the mappings: `oru_r01.yaml` is checked by `oru_r01_test.yaml`.

A test file lists cases; each gives an input message and what the mapping must
make of it, field by field:

    tests:
      - name: blood routine from the LIS
        input: samples/lis_blood_routine.hl7     # beside this file; or `hl7: |` inline,
        encoding: gb18030                        # or `row: {column: value}` for DB rows
        expect:
          - type: LabResult
            record_id: lab:LIS:10:2403210318
            fields:
              person.name: 陈思雨
              observations: {count: 10}
              observations.0.value: 8.12
      - name: no OBR-3 and no control id
        hl7: |
          MSH|^~\\&|LIS|10|…
        expect_error: needs a record_id

A test file with `rules:` instead of `mapping:` tests a rule table the same way
(transforms/rules/testing.py): a woman's records in, the derived records out.

`expect` lists every record the message must produce, in order (so a missing or
an extra record fails). Under `fields`, each key is a dotted path into the record
(list items by index) and each value must equal what the mapping made; `{count: N}`
checks a list's length and `{absent: true}` that the value is empty. Each record is
also validated against its canonical model. No broker or database is needed:
`mch-engine mapping test` runs these before a deploy, and `make test` runs them too.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from core import i18n
from core.config_paths import ConfigRoots
from core.errors import ConfigError, ConfigErrors, InputError, MappingError
from core.i18n import t
from core.yaml_lines import LineMap, load_yaml
from transforms.batch import split_frame
from transforms.decode import codec_for_msh18, decode
from transforms.hl7v2 import Message, read_msh
from transforms.mapping.compiler import MappedRecord, Mapping, load_mapping

CASE_KEYS = {"name", "input", "hl7", "row", "encoding", "expect", "expect_error"}

# Texts `mch-engine mapping test` prints for a failed case.
_TEXT: dict[str, tuple[str, str]] = {
    "test_needs_cases": ("测试文件需要一个非空的 tests: 列表", "a test file needs a non-empty 'tests:' list"),
    "test_case_not_mapping": ("每个测试用例必须是一个映射（键: 值）", "a test case must be a mapping"),
    "test_unknown_keys": ("未知的键 {keys}（可用：{known}）", "unknown keys {keys} (expected {known})"),
    "test_mapping_failed": ("映射失败：{error}", "mapping failed: {error}"),
    "test_expected_error": (
        "应报错（包含 {error!r}），实际生成了 {n} 条记录",
        "expected an error containing {error!r}, got {n} record(s)",
    ),
    "test_record_count": (
        "应生成 {want} 条记录，实际 {n} 条（{kinds}）",
        "expected {want} record(s), got {n} ({kinds})",
    ),
    "test_expectation_shape": (
        "期望必须是含 type 和 fields 的映射",
        "expectation must be a mapping with type and fields",
    ),
    "test_differs": ("{what}：应为 {want!r}，实际 {got!r}", "{what}: expected {want!r}, got {got!r}"),
    "test_count": ("应有 {want} 项，实际 {got}", "expected {want} item(s), got {got}"),
    "test_not_absent": ("应为空，实际 {got!r}", "expected no value, got {got!r}"),
    "test_no_field": (
        "应为 {want!r}，但记录中没有此字段",
        "expected {want!r}, but the record has no such field",
    ),
    "test_value_differs": ("应为 {want!r}，实际 {got!r}", "expected {want!r}, got {got!r}"),
}
i18n.register(_TEXT)


@dataclass
class CaseResult:
    file: Path
    line: int | None
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def location(self) -> str:
        return f"{self.file}:{self.line}" if self.line else str(self.file)


def find_test_files(paths: list[Path]) -> list[Path]:
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*_test.yaml"))
        elif path.name.endswith("_test.yaml"):
            found.append(path)
        elif path.suffix in (".yaml", ".yml"):
            sibling = path.with_name(f"{path.stem}_test.yaml")
            if sibling.is_file():
                found.append(sibling)
    return found


def run_test_file(path: Path) -> list[CaseResult]:
    """Every case of one test file; a broken test file is one failed result saying why."""
    try:
        data, lines = load_yaml(path.read_text(encoding="utf-8"), str(path))
        if isinstance(data, dict) and "rules" in data:
            from transforms.rules.testing import run_rule_test_file  # a rule table's tests

            return run_rule_test_file(path, data, lines)
        reference = str((data or {}).get("mapping") or path.name.replace("_test.yaml", ".yaml"))
        mapping_file = path.parent / reference
        roots = ConfigRoots.of([Path.cwd(), path.parent])
        refusal = roots.refusal("mapping file", reference, mapping_file)
        if refusal is not None:
            raise ConfigError(str(path), lines.line_of(("mapping",)), refusal)
        mapping = load_mapping(mapping_file, display=str(mapping_file), roots=roots)
    except (ConfigError, ConfigErrors) as exc:
        return [CaseResult(path, getattr(exc, "line", None), "(file)", [str(exc)])]
    cases = (data or {}).get("tests")
    if not isinstance(cases, list) or not cases:
        return [CaseResult(path, 1, "(file)", [t("test_needs_cases")])]
    return [_run_case(path, lines, mapping, case, i) for i, case in enumerate(cases)]


def open_case(path: Path, lines: LineMap, case: Any, index: int, known: set[str]) -> CaseResult:
    """A case's result, named and placed; with a problem already when the case is not a
    mapping or has keys other than `known`."""
    name = str(case.get("name", f"case {index + 1}")) if isinstance(case, dict) else f"case {index + 1}"
    result = CaseResult(path, lines.line_of(("tests", index)), name)
    if not isinstance(case, dict):
        result.problems.append(t("test_case_not_mapping"))
    elif unknown := set(case) - known:
        result.problems.append(t("test_unknown_keys", keys=sorted(unknown), known=sorted(known)))
    return result


def _run_case(path: Path, lines: LineMap, mapping: Mapping, case: Any, index: int) -> CaseResult:
    result = open_case(path, lines, case, index, CASE_KEYS)
    if result.problems:
        return result
    try:
        produced = [r for source in _inputs(path, case) for r in mapping.apply(source)]
        validated = [_validated(r) for r in produced]
    except (InputError, ValueError, OSError) as exc:
        expected_error = case.get("expect_error")
        if expected_error and str(expected_error) in str(exc):
            return result
        result.problems.append(t("test_mapping_failed", error=exc))
        return result
    if "expect_error" in case:
        result.problems.append(t("test_expected_error", error=case["expect_error"], n=len(produced)))
        return result
    expect = case.get("expect") or []
    if len(expect) != len(validated):
        kinds = ", ".join(r.record_type for r in produced) or "-"
        result.problems.append(t("test_record_count", want=len(expect), n=len(produced), kinds=kinds))
    for i, (want, got) in enumerate(zip(expect, validated, strict=False)):
        result.problems += [f"records[{i}] {p}" for p in compare_record(want, got)]
    return result


def _inputs(path: Path, case: dict[str, Any]) -> list[Message | dict[str, Any]]:
    """The case's input: a row, inline HL7, or a file (an FHS/BHS batch gives each message)."""
    if "row" in case:
        return [dict(case["row"])]
    if "hl7" in case:
        return [Message(str(case["hl7"]).replace("\r\n", "\r").replace("\n", "\r"))]
    raw = (path.parent / str(case["input"])).read_bytes()
    parts = split_frame(raw)
    out: list[Message | dict[str, Any]] = []
    for part in parts:
        declared = read_msh(part).charset
        encoding = str(case.get("encoding") or codec_for_msh18(declared) or "utf-8")
        out.append(Message(decode(part, encoding, declared=declared)))
    return out


def _validated(record: MappedRecord) -> MappedRecord:
    """The record as the store would get it (validated and normalised by its model), so a
    test also catches what the store would refuse."""
    from transforms.validate import canonical

    payload = canonical(record.record_type, record.record_id, record.record)
    return MappedRecord(record.record_type, record.record_id, record.event_time, payload)


def compare_record(want: Any, got: MappedRecord) -> list[str]:
    if not isinstance(want, dict):
        return [t("test_expectation_shape")]
    problems = []
    if want.get("type") and want["type"] != got.record_type:
        problems.append(t("test_differs", what="type", want=want["type"], got=got.record_type))
    for key in ("record_id", "event_time"):
        if key in want and str(want[key]) != str(getattr(got, key)):
            problems.append(t("test_differs", what=key, want=want[key], got=getattr(got, key)))
    for dotted, expected in (want.get("fields") or {}).items():
        found, actual = _dig(got.record, str(dotted))
        problems += [f"fields.{dotted}: {p}" for p in _compare_value(expected, found, actual)]
    return problems


def _compare_value(expected: Any, found: bool, actual: Any) -> Iterator[str]:
    if isinstance(expected, dict) and set(expected) <= {"count", "absent"}:
        if "count" in expected:
            size = len(actual) if isinstance(actual, list) else None
            if size != expected["count"]:
                got = size if size is not None else repr(actual)
                yield t("test_count", want=expected["count"], got=got)
        if expected.get("absent") and actual not in (None, "", []):
            yield t("test_not_absent", got=actual)
        return
    if not found:
        yield t("test_no_field", want=expected)
    elif not _equal(expected, actual):
        yield t("test_value_differs", want=expected, got=actual)


def _equal(expected: Any, actual: Any) -> bool:
    if isinstance(expected, date) and isinstance(actual, str):  # YAML reads 2024-03-01 as a date
        return expected.isoformat() == actual
    if isinstance(expected, int | float) and isinstance(actual, int | float):
        return abs(expected - actual) < 1e-9
    if isinstance(expected, str) and not isinstance(actual, str) and actual is not None:
        return expected == str(actual)
    return bool(expected == actual)


def _dig(value: Any, dotted: str) -> tuple[bool, Any]:
    for part in dotted.split("."):
        if isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            return False, None
    return True, value


__all__ = ["CaseResult", "MappingError", "compare_record", "find_test_files", "open_case", "run_test_file"]
