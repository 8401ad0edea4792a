"""JSON Schema of every canonical record, committed under docs/schemas/.

Interface engineers read these files (descriptions carry the Chinese term and the WS 363
data-element id), and a test compares them with the code so a model change cannot ship
without its schema. The schema describes the canonical form as stored and delivered
(pydantic "serialization" mode: derived fields such as `id_card_valid` and `bmi` included,
marked readOnly); `validate_record` also accepts the shorthand inputs the descriptions
mention (`10+3` for a gestational age, `code^display^system` for a coded value).
"""

from __future__ import annotations

import json
from pathlib import Path

from transforms.records import RECORD_TYPES
from transforms.records.base import Record

__all__ = ["SCHEMA_DIALECT", "export_schemas", "render_schema", "schema_differences"]

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
_SUFFIX = ".schema.json"


def render_schema(model: type[Record]) -> str:
    """The schema file's exact text: stable key order, Chinese kept, trailing newline."""
    body = model.model_json_schema(mode="serialization")
    document = {"$schema": SCHEMA_DIALECT, "x-schema-version": model.SCHEMA_VERSION, **body}
    return json.dumps(document, ensure_ascii=False, indent=2) + "\n"


def _expected() -> dict[str, str]:
    return {f"{name}{_SUFFIX}": render_schema(model) for name, model in RECORD_TYPES.items()}


def export_schemas(directory: Path) -> list[Path]:
    """Write one `<RecordType>.schema.json` per record type; returns the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, text in _expected().items():
        path = directory / filename
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def schema_differences(directory: Path) -> list[str]:
    """What differs between the code and the schema files in `directory` (empty: in sync)."""
    expected = _expected()
    present = {p.name for p in directory.glob(f"*{_SUFFIX}")} if directory.is_dir() else set()
    problems = []
    for filename, text in expected.items():
        path = directory / filename
        if filename not in present:
            problems.append(f"{path} is missing")
        elif path.read_text(encoding="utf-8") != text:
            problems.append(f"{path} differs from the code")
    for filename in sorted(present - expected.keys()):
        problems.append(f"{directory / filename} is extra (no such record type)")
    return problems
