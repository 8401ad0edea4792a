"""The committed JSON Schemas (docs/schemas/) must match the record models in the code."""

from __future__ import annotations

import json
from pathlib import Path

from transforms.records import RECORD_TYPES
from transforms.records.schema import export_schemas, render_schema, schema_differences

SCHEMAS = Path(__file__).resolve().parents[3] / "docs" / "schemas"


def test_committed_schemas_match_the_code() -> None:
    """A model change without its regenerated schema fails, saying how to regenerate."""
    problems = schema_differences(SCHEMAS)
    assert not problems, (
        "the record schemas in docs/schemas are out of date; run "
        "`mch-engine schema export docs/schemas` and commit the result:\n" + "\n".join(problems)
    )


def test_export_writes_one_file_per_record_type(tmp_path: Path) -> None:
    """Export writes <RecordType>.schema.json for every type, and then nothing differs."""
    written = export_schemas(tmp_path / "schemas")
    assert sorted(p.name for p in written) == sorted(f"{n}.schema.json" for n in RECORD_TYPES)
    assert schema_differences(tmp_path / "schemas") == []


def test_files_are_utf8_with_chinese_kept_and_a_trailing_newline(tmp_path: Path) -> None:
    """Chinese terms are written as characters, not \\u escapes, and files end with a newline."""
    [path] = [p for p in export_schemas(tmp_path) if p.name == "PrenatalVisit.schema.json"]
    raw = path.read_bytes()
    assert raw.endswith(b"}\n")
    text = raw.decode("utf-8")
    assert "检查日期" in text and "\\u" not in text
    document = json.loads(text)
    assert document["title"] == "PrenatalVisit"
    assert document["x-schema-version"] == 1


def test_rendering_is_stable() -> None:
    """Rendering twice gives the same text, so the comparison never flickers."""
    for model in RECORD_TYPES.values():
        assert render_schema(model) == render_schema(model)


def test_differences_name_missing_changed_and_extra_files(tmp_path: Path) -> None:
    """Each kind of drift is reported with the file it concerns."""
    export_schemas(tmp_path)
    (tmp_path / "Person.schema.json").unlink()
    (tmp_path / "LabResult.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "Baby.schema.json").write_text("{}\n", encoding="utf-8")
    assert sorted(schema_differences(tmp_path)) == sorted(
        [
            f"{tmp_path / 'Person.schema.json'} is missing",
            f"{tmp_path / 'LabResult.schema.json'} differs from the code",
            f"{tmp_path / 'Baby.schema.json'} is extra (no such record type)",
        ]
    )


def test_missing_directory_lists_every_file(tmp_path: Path) -> None:
    """Comparing against a directory that does not exist reports every schema missing."""
    assert len(schema_differences(tmp_path / "nowhere")) == len(RECORD_TYPES)
