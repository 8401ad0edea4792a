"""docs/mapping.md documents every construct of the mapping language, and `include:` stands alone.

The shipped mappings are what an interface engineer copies from: every key, converter and
derived value they use must have its entry in the guide, and so must every key the compiler
accepts. docs/oncall.md's examples must name channels and destinations that routes.yaml ships.
"""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.errors import ConfigErrors
from core.settings import load_settings
from support import REPO, shipped_mappings
from transforms.mapping import load_mapping
from transforms.mapping.compiler import FILE_KEYS, RECORD_KEYS, SPEC_KEYS

GUIDE = (REPO / "docs" / "mapping.md").read_text(encoding="utf-8")
QUANTITY_KEYS = {"value", "unit", "fixed_unit"}
LANGUAGE = FILE_KEYS | RECORD_KEYS | SPEC_KEYS | QUANTITY_KEYS


def _documented_keys() -> set[str]:
    """The keys with a row in the guide's `Every key` table."""
    section = GUIDE.split("## Every key", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.MULTILINE))


def _shipped() -> list[Path]:
    return shipped_mappings(included=True)


def _walk(node: Any, found: dict[str, set[str]]) -> None:
    """Keys of the language, converters and derived values a mapping uses (field names are
    record fields, not keys: a key is one of the compiler's)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in LANGUAGE:
                found["keys"].add(str(key))
            if key in ("convert", "derive"):
                found[str(key)].add(str(value))
            _walk(value, found)
    elif isinstance(node, list):
        for item in node:
            _walk(item, found)


def test_every_key_of_the_language_has_an_entry() -> None:
    assert sorted(LANGUAGE - _documented_keys()) == []


def test_every_construct_the_shipped_mappings_use_is_documented() -> None:
    found: dict[str, set[str]] = {"keys": set(), "convert": set(), "derive": set()}
    for path in _shipped():
        _walk(yaml.safe_load(path.read_text(encoding="utf-8")), found)
    assert {"include", "obx", "take", "type_from", "fixed_unit"} <= found["keys"]  # the scan sees them
    assert sorted(found["keys"] - _documented_keys()) == []
    for kind in ("convert", "derive"):
        assert found[kind]
        assert [name for name in sorted(found[kind]) if f"`{name}`" not in GUIDE] == [], kind


def test_include_beside_other_keys_is_refused_at_its_line(tmp_path: Path) -> None:
    (tmp_path / "shared.yaml").write_text("path: PID-5\n", encoding="utf-8")
    mapping = tmp_path / "m.yaml"
    mapping.write_text(
        textwrap.dedent(
            """\
            records:
              - type: Person
                record_id: "{MSH-10}"
                fields:
                  name: {include: shared.yaml, default: 无名}
            """
        ),
        encoding="utf-8",
    )
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(mapping)
    assert [(e.line, e.message) for e in caught.value.errors] == [
        (5, "'default' beside 'include': an included rule stands alone")
    ]


@pytest.mark.parametrize("doc", ["oncall.md", "operations.md"])
def test_docs_examples_name_shipped_channels_and_destinations(doc: str) -> None:
    settings = load_settings(REPO / "routes.yaml", env={})
    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    channels = set(re.findall(r"--channel[ =]([A-Za-z_][\w-]*)", text))
    destinations = set(re.findall(r"(?:--destination[ =]|destination=)([A-Za-z_][\w-]*)", text))
    assert sorted(channels - set(settings.channels)) == []
    assert sorted(destinations - set(settings.destinations)) == []
