"""A mapping the compiler cannot build is one `file:line` line from `mch-engine check`, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core.errors import ConfigErrors
from transforms.mapping.compiler import load_mapping

REPO = Path(__file__).resolve().parents[3]

ROUTES = """\
version: 1
engine:
  database: sqlite:///engine.db
channels:
  his:
    type: mllp
    listen: 127.0.0.1:2575
routes:
  - name: persons
    from: [his]
    mapping: mappings/person.yaml
    to: [record_store]
destinations:
  record_store: {type: record_store}
"""

MAPPING = """\
mapping: person
records:
  - type: Person
    record_id: "person:{PID-3[1].1}"
    fields:
"""


def only_problem(tmp_path: Path, fields: str) -> str:
    """`mch-engine check` run as an engineer runs it, on routes.yaml and a mapping with these
    `fields:` lines; it must fail with one problem line (then the count), no traceback."""
    mapping = MAPPING + textwrap.indent(textwrap.dedent(fields).strip(), " " * 6) + "\n"
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "person.yaml").write_text(mapping, "utf-8")
    (tmp_path / "routes.yaml").write_text(ROUTES, "utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update(PYTHONPATH=str(REPO), MCH_LANG="en")
    command = [sys.executable, "-m", "engine.cli", "check", "--config", "routes.yaml"]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    problem, count = result.stderr.splitlines()
    assert count.startswith("1 problem in ")
    return problem


def test_segment_name_starting_with_a_digit_is_a_located_problem(tmp_path: Path) -> None:
    """`1ZX-3.1` is refused as a path (segment ids start with a letter), at its line."""
    problem = only_problem(tmp_path, "name: PID-5[1].1\nnote: 1ZX-3.1")
    assert problem.endswith(
        "person.yaml:7: bad HL7 path '1ZX-3.1': segment '1ZX' must be 2-3 upper-case "
        "letters/digits, starting with a letter"
    )


def test_a_rule_shape_the_compiler_does_not_expect_is_a_located_problem(tmp_path: Path) -> None:
    """`fields:` given as a list is not foreseen by any check; compiling it fails inside the
    compiler, and the failure comes out as the record's line, not a traceback."""
    problem = only_problem(tmp_path, 'ids: {each: "PID-3[*]", fields: [id, type]}')
    assert "person.yaml:3: cannot compile this record: AttributeError: " in problem


def test_a_mapping_saved_as_gbk_is_a_problem_naming_the_file_not_a_traceback(tmp_path: Path) -> None:
    """Found by fuzzing: a mapping file in GBK (an editor's default on Chinese Windows) made
    load_mapping raise UnicodeDecodeError; it is a ConfigError naming the file and the offset."""
    path = tmp_path / "person.yaml"
    path.write_bytes((MAPPING + "      name: PID-5  # 姓名\n").encode("gbk"))
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(path, display="person.yaml")
    assert [str(e) for e in caught.value.errors] == [
        f"person.yaml: not valid UTF-8 (byte offset {len(MAPPING) + 21}); save the file as UTF-8"
    ]


def test_an_included_file_saved_as_gbk_is_a_problem_naming_that_file(tmp_path: Path) -> None:
    """The same for a file a mapping includes: the problem names the included file."""
    (tmp_path / "name.yaml").write_bytes("path: PID-5  # 姓名\n".encode("gbk"))
    path = tmp_path / "person.yaml"
    path.write_text(MAPPING + "      name: {include: name.yaml}\n", "utf-8")
    with pytest.raises(ConfigErrors) as caught:
        load_mapping(path, display="person.yaml")
    assert [str(e) for e in caught.value.errors] == [
        "name.yaml: not valid UTF-8 (byte offset 15); save the file as UTF-8"
    ]


def test_a_mapping_saved_with_a_byte_order_mark_loads(tmp_path: Path) -> None:
    """Windows editors put a UTF-8 BOM first; it is not part of the mapping (as in routes.yaml)."""
    path = tmp_path / "person.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + (MAPPING + "      name: PID-5\n").encode())
    assert [rule.type for rule in load_mapping(path).records] == ["Person"]
