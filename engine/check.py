"""`mch-engine check`: every problem in routes.yaml and its mapping files, in one run.

An interface engineer editing configuration on a hospital server wants the whole list of
mistakes with line numbers, not one error per restart. The CLI prints `format_problems` on
failure and `summarize` on success.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from core.errors import ConfigError, ConfigErrors
from core.i18n import t
from core.settings import Settings, read_settings
from core.yaml_lines import problems_of

__all__ = ["check_config", "format_problems", "summarize"]


def check_config(
    path: str | Path,
    env: Mapping[str, str] | None = None,
    *,
    check_mapping: Callable[..., None] | None = None,
) -> list[ConfigError]:
    """All problems of routes.yaml (YAML, `${VAR}`, schema, references, missing mapping
    files), then those `check_mapping(path, roots=...)` raises for each existing mapping file
    (`roots`: where its includes and code tables may be), then those in the files
    destinations read (rule tables); empty if OK.
    `env` defaults to os.environ."""
    loaded = read_settings(path, env)
    problems = list(loaded.problems)
    if check_mapping is not None:
        for mapping in loaded.mapping_files:
            try:
                check_mapping(mapping, roots=loaded.roots)
            except (ConfigError, ConfigErrors) as exc:
                problems.extend(problems_of(exc))
    if loaded.settings is not None:
        for name, file, _line in loaded.destination_files:
            try:
                loaded.settings.destinations[name].check_file(file)
            except (ConfigError, ConfigErrors) as exc:
                problems.extend(problems_of(exc))
    return problems


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def format_problems(errors: Iterable[ConfigError], *, localized: bool = False) -> str:
    """One `file:line: message` per line, sorted by file then line, then a count, e.g.
    `3 problems in routes.yaml` (`localized`: in the operator's language, for the CLI);
    empty text when there are none."""
    ordered = sorted(errors, key=lambda e: (e.file, e.line or 0))
    if not ordered:
        return ""
    files = ", ".join(dict.fromkeys(e.file for e in ordered))
    lines = [str(e) for e in ordered]
    if localized:
        key = "check_problem" if len(ordered) == 1 else "check_problems"
        lines.append(t(key, n=len(ordered), files=files))
    else:
        lines.append(f"{_plural(len(ordered), 'problem')} in {files}")
    return "\n".join(lines)


def summarize(settings: Settings, filename: str | None = None) -> str:
    """Success line for the CLI, e.g. `routes.yaml: OK (2 channels, 3 routes, 1 destination)`."""
    name = filename or (str(settings.source) if settings.source else "routes.yaml")
    counts = ", ".join(
        [
            _plural(len(settings.channels), "channel"),
            _plural(len(settings.routes), "route"),
            _plural(len(settings.destinations), "destination"),
        ]
    )
    return f"{name}: OK ({counts})"
