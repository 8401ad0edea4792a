"""`mch-engine check`: every problem in routes.yaml and its mapping files, in one run.

An interface engineer editing configuration on a hospital server wants the whole list of
mistakes with line numbers, not one error per restart. The CLI prints `format_problems` on
failure and `summarize` on success.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from core.audience import may_receive
from core.errors import ConfigError, ConfigErrors
from core.i18n import t
from core.secrets import SecretFileError, secret_environment
from core.settings import LoadedSettings, Settings, read_settings
from core.yaml_lines import problems_of
from engine import leadership
from transforms.records import RECORD_TYPES, fixed_audience

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
    destinations read (rule tables), and routes that would send a record type with a fixed audience (a PMTCT
    case) to a destination that may not receive it; empty if OK.
    `env` defaults to os.environ."""
    loaded = read_settings(path, env)
    problems = list(loaded.problems)
    compiled: dict[Path, Any] = {}
    if check_mapping is not None:
        for mapping in loaded.mapping_files:
            try:
                compiled[mapping] = check_mapping(mapping, roots=loaded.roots)
            except (ConfigError, ConfigErrors) as exc:
                problems.extend(problems_of(exc))
    if loaded.settings is not None:
        problems.extend(_audience_problems(loaded, compiled))
    if loaded.settings is not None:
        for name, file, _line in loaded.destination_files:
            try:
                loaded.settings.destinations[name].check_file(file)
            except (ConfigError, ConfigErrors) as exc:
                problems.extend(problems_of(exc))
    try:
        problems.extend(_wechat_env_problems(path, secret_environment(env)))
    except SecretFileError as exc:
        problems.append(ConfigError(str(path), None, str(exc)))
    if loaded.settings is not None and (why := leadership.refusal(loaded.settings)) is not None:
        problems.append(ConfigError(str(path), None, why))
    return problems


def _wechat_env_problems(path: str | Path, env: Mapping[str, str]) -> list[ConfigError]:
    """A malformed `MCH_WECHAT_ENCODING_AES_KEY` would stop the callback at start, and one
    without `MCH_WECHAT_APPID` would refuse every encrypted callback: said here first, without
    the key's value."""
    from channels.wechat.crypto import AES_KEY_ENV, BadAesKey, parse_aes_key

    text = env.get(AES_KEY_ENV, "").strip()
    if not text:
        return []
    try:
        parse_aes_key(text)
    except BadAesKey as exc:
        return [ConfigError(str(path), None, str(exc))]
    if not env.get("MCH_WECHAT_APPID", "").strip():
        return [ConfigError(str(path), None, t("wx_aes_key_without_appid", env=AES_KEY_ENV))]
    return []


def _audience_problems(loaded: LoadedSettings, compiled: Mapping[Path, Any]) -> list[ConfigError]:
    """A route whose mapping makes a record type with a fixed audience (a PMTCT case), sent
    to a destination that may not receive it (core/audience.py), at that `to:` line. The
    engine would withhold such records anyway; the route is a mistake to say so at once."""
    settings = loaded.settings
    assert settings is not None
    problems: list[ConfigError] = []
    for index, route in enumerate(settings.routes):
        path = route.mapping_path(settings)
        if path is None:  # records passed on: the types the route selects by name
            types = dict.fromkeys(_record_type_named(t) for t in route.message_type if t != "*")
        else:
            types = dict.fromkeys(rule.type for rule in getattr(compiled.get(path), "records", ()))
        fixed = [(kind, audience) for kind in types if (audience := fixed_audience(kind))]
        written = loaded.data["routes"][index].get("to")
        for position, destination in enumerate(route.to):
            reaches = settings.destinations[destination].reaches
            loc: tuple[Any, ...] = ("routes", index, "to")
            if isinstance(written, list):
                loc = (*loc, position)
            for kind, audience in fixed:
                if not may_receive(reaches, audience):
                    message = t(
                        "check_audience_refused",
                        route=route.name,
                        record_type=kind,
                        audience=audience,
                        destination=destination,
                        reaches=reaches,
                    )
                    problems.append(ConfigError(loaded.filename, loaded.lines.line_of(loc), message))
    return problems


def _record_type_named(message_type: str) -> str:
    """A record type as a route's `message_type:` holds it (upper case), spelt as its model."""
    return next((kind for kind in RECORD_TYPES if kind.upper() == message_type), message_type)


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
