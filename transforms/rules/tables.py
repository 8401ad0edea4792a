"""Reading a rule table (YAML under `mappings/rules/`) into a typed model, with `file:line` errors.

Rule tables are edited by the site engineer, like mappings: every mistake is reported with
its line, all at once, and an unknown key is a mistake rather than something ignored.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict

from core.errors import ConfigError
from core.yaml_lines import Loc, dotted, parse_yaml, raise_problems, try_validate

__all__ = ["TableModel", "known_record_type", "read_table", "shown_path"]

M = TypeVar("M", bound=BaseModel)


class TableModel(BaseModel):
    """Base of rule-table models: unknown keys are errors, values are kept as written."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def problems(self) -> list[tuple[Loc, str]]:
        """Mistakes between entries (a name used but not defined), each at its place."""
        return []


def known_record_type(value: str) -> str:
    """A record type a table names, refused with the known ones when there is no such type."""
    from transforms.records import RECORD_TYPES

    if value not in RECORD_TYPES:
        raise ValueError(f"unknown record type {value!r}; known: {', '.join(sorted(RECORD_TYPES))}")
    return value


def shown_path(path: Path) -> str:
    """The path as an operator would type it: relative to where the command runs, when below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def read_table(path: Path, model: type[M]) -> M:
    """Parse and validate one table; raises ConfigErrors naming each bad line."""
    name = shown_path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(name, None, "rule table not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(name, None, f"cannot read the rule table: {exc}") from None
    parsed = parse_yaml(text, name)
    problems = list(parsed.problems)
    table = None
    if parsed.complete and parsed.data is not None:
        table, found = try_validate(model, parsed.data, parsed.lines, name)
        problems += found
        for loc, message in table.problems() if table is not None else ():
            problems.append(ConfigError(name, parsed.lines.line_of(loc), f"{dotted(loc)}: {message}"))
    elif parsed.complete:
        problems.append(ConfigError(name, 1, "the rule table is empty"))
    raise_problems(problems)
    assert table is not None
    return table
