"""Reading routes.yaml: every problem collected (YAML, schema, references between sections,
missing mapping files) so `mch-engine check` can show them all at once; `load_settings`
raises them. The one place that reads MCH_* environment variables."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.config_paths import ConfigRoots
from core.errors import ConfigError, ConfigErrors
from core.secrets import SecretFileError, secret_environment
from core.settings.models import Settings, config_roots, resolve_path, settings_model
from core.settings.values import ENV_DEFAULTS, WILDCARD_HOSTS, parse_listen
from core.yaml_lines import LineMap, Loc, dotted, hint, parse_yaml, try_validate


@dataclass
class LoadedSettings:
    """Everything `read_settings` learnt; `settings` is None unless there are no problems."""

    filename: str
    base_dir: Path
    settings: Settings | None = None
    problems: list[ConfigError] = field(default_factory=list)
    data: Any = None
    lines: LineMap = field(default_factory=LineMap)
    mapping_files: list[Path] = field(default_factory=list)
    """Distinct existing mapping files named by routes, in file order."""
    destination_files: list[tuple[str, Path, int | None]] = field(default_factory=list)
    """Existing files destinations read (rule tables): (destination, path, line in routes.yaml)."""
    roots: ConfigRoots = field(default_factory=lambda: ConfigRoots(()))
    """Folders configuration may read from (routes.yaml's and `engine.allowed_paths`)."""


def _allowed_paths(data: Any) -> list[str]:
    """`engine.allowed_paths` from raw data: the strings among them (the schema reports the rest)."""
    allowed = _section(data, "engine").get("allowed_paths") if isinstance(data, dict) else None
    return [text for text in allowed if isinstance(text, str)] if isinstance(allowed, list) else []


def _fill_env_defaults(data: Any, env: Mapping[str, str]) -> None:
    if not isinstance(data, dict):
        return
    engine = data.get("engine")
    if engine is None and "engine" not in data:
        engine = data["engine"] = {}
    if isinstance(engine, dict):
        for key, (variable, default) in ENV_DEFAULTS.items():
            if key not in engine:
                engine[key] = env.get(variable) or default


def _names_at(route: dict[Any, Any], key: str, base: Loc, skip: set[Loc]) -> list[tuple[Loc, str]]:
    value = route.get(key)
    loc = (*base, key)
    if isinstance(value, str):
        found = [(loc, value)]
    elif isinstance(value, list):
        found = [((*loc, i), v) for i, v in enumerate(value) if isinstance(v, str)]
    else:
        found = []
    return [(where, name) for where, name in found if where not in skip and loc not in skip]


def _section(data: dict[Any, Any], key: str) -> dict[Any, Any]:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _reference_problems(loaded: LoadedSettings, skip: set[Loc]) -> list[ConfigError]:
    """Cross-section checks on the raw data, so they still run when the schema failed."""
    data, lines, filename = loaded.data, loaded.lines, loaded.filename
    if not isinstance(data, dict):
        return []
    problems: list[ConfigError] = []

    def problem(loc: Loc, message: str) -> None:
        problems.append(ConfigError(filename, lines.line_of(loc), f"{dotted(loc)}: {message}"))

    channels: dict[Any, Any] = _section(data, "channels")
    destinations: dict[Any, Any] = _section(data, "destinations")

    # Two listeners on one port: the second would fail at startup, say so now.
    taken: list[tuple[str, int, str, Loc]] = []
    listeners: list[tuple[Loc, Any, str]] = []
    engine = data.get("engine")
    if isinstance(engine, dict) and isinstance(engine.get("http"), dict):
        listeners.append((("engine", "http", "listen"), engine["http"].get("listen"), "engine.http"))
    for name, channel in channels.items():
        if isinstance(channel, dict):
            listeners.append((("channels", name, "listen"), channel.get("listen"), f"channel {name!r}"))
    for loc, listen, owner in listeners:
        if not isinstance(listen, str) or loc in skip:
            continue
        try:
            host, port = parse_listen(listen)
        except ValueError:
            continue  # the schema check reports it
        for other_host, other_port, other_owner, other_loc in taken:
            if port == other_port and (host == other_host or WILDCARD_HOSTS & {host, other_host}):
                problem(
                    loc,
                    f"{listen.strip()} is already used by {other_owner} (line {lines.line_of(other_loc)})",
                )
                break
        else:
            taken.append((host, port, owner, loc))

    routes = data.get("routes")
    seen_names: dict[str, Loc] = {}
    seen_files: set[Path] = set()
    for index, route in enumerate(routes if isinstance(routes, list) else []):
        if not isinstance(route, dict):
            continue
        base: Loc = ("routes", index)
        name = route.get("name")
        if isinstance(name, str) and (*base, "name") not in skip:
            if name in seen_names:
                first = lines.line_of(seen_names[name])
                problem((*base, "name"), f"duplicate route name {name!r} (first at line {first})")
            else:
                seen_names[name] = (*base, "name")
        for loc, channel in _names_at(route, "from", base, skip):
            if channel not in channels:
                problem(loc, f"unknown channel {channel!r}{hint(channel, channels)}")
        for loc, destination in _names_at(route, "to", base, skip):
            if destination not in destinations:
                problem(loc, f"unknown destination {destination!r}{hint(destination, destinations)}")
        mapping = route.get("mapping")
        if isinstance(mapping, str) and mapping.strip() and (*base, "mapping") not in skip:
            path = resolve_path(mapping, loaded.base_dir)
            refusal = loaded.roots.refusal("mapping file", mapping, path)
            if refusal is not None:
                problem((*base, "mapping"), refusal)
            elif path.is_file():
                if path not in seen_files:
                    seen_files.add(path)
                    loaded.mapping_files.append(path)
            else:
                problem((*base, "mapping"), f"mapping file not found: {path}")
    for channel in _section(_section(data, "alerts"), "feeds"):
        if channel not in channels and ("alerts", "feeds", channel) not in skip:
            problem(("alerts", "feeds", channel), f"unknown channel {channel!r}{hint(channel, channels)}")
    return problems


def _destination_file_problems(loaded: LoadedSettings, settings: Settings) -> list[ConfigError]:
    """Files a destination names: inside the configuration folder and present."""
    problems: list[ConfigError] = []
    for name, destination in settings.destinations.items():
        for key, index, written in destination.config_files():
            loc: Loc = ("destinations", name, key, index)
            line = loaded.lines.line_of(loc)
            path = destination.file_path(written, settings)
            refusal = loaded.roots.refusal("file", written, path)
            if refusal is None and not path.is_file():
                refusal = f"file not found: {path}"
            if refusal is not None:
                problems.append(ConfigError(loaded.filename, line, f"{dotted(loc)}: {refusal}"))
            else:
                loaded.destination_files.append((name, path, line))
    return problems


def _channel_problems(loaded: LoadedSettings, settings: Settings) -> list[ConfigError]:
    """What a channel or destination names that is not as it should be (a derived channel's
    record store, a `tls:` file that does not load)."""
    problems: list[ConfigError] = []
    sections = (("channels", settings.channels), ("destinations", settings.destinations))
    for section, items in sections:
        for name, item in items.items():
            for key, message in item.problems_with(settings):
                loc: Loc = (section, name, key)
                problems.append(
                    ConfigError(loaded.filename, loaded.lines.line_of(loc), f"{dotted(loc)}: {message}")
                )
    return problems


def _mapping_needed_problems(loaded: LoadedSettings, settings: Settings) -> list[ConfigError]:
    """A route without `mapping:` must take only channels that carry canonical records."""
    problems: list[ConfigError] = []
    for index, route in enumerate(settings.routes):
        if route.mapping is not None:
            continue
        others = [
            c for c in route.from_ if c in settings.channels and not settings.channels[c].carries_records
        ]
        if others:
            loc: Loc = ("routes", index)
            message = (
                f"{dotted(loc)}: route {route.name!r} needs `mapping:`: channel {others[0]!r} "
                "does not carry canonical records (only a `derived` channel's pass on unchanged)"
            )
            problems.append(ConfigError(loaded.filename, loaded.lines.line_of(loc), message))
    return problems


def _record_type_problems(loaded: LoadedSettings, settings: Settings) -> list[ConfigError]:
    """A route's `message_type:` fits its channels: record types (RiskAssessment) for channels
    that carry records, HL7 types (ORU^R01) for the others."""
    problems: list[ConfigError] = []
    for index, route in enumerate(settings.routes):
        channels = [(n, settings.channels[n]) for n in route.from_ if n in settings.channels]
        written = loaded.data["routes"][index].get("message_type")
        for position, wanted in enumerate(route.message_type):
            if wanted == "*":
                continue
            message = None
            for name, channel in channels:
                known = {kind.upper(): kind for kind in channel.record_types}
                if channel.carries_records and wanted not in known:
                    message = f"channel {name!r} carries records of type {', '.join(known.values())}"
                elif not channel.carries_records and "^" not in wanted and len(wanted) > 3:
                    message = f"{wanted!r} is a record type; channel {name!r} carries HL7 messages"
                if message:
                    break
            if message:
                loc: Loc = ("routes", index, "message_type")
                if isinstance(written, list):
                    loc = (*loc, position)
                problems.append(
                    ConfigError(loaded.filename, loaded.lines.line_of(loc), f"{dotted(loc)}: {message}")
                )
    return problems


def read_settings(path: str | Path, env: Mapping[str, str] | None = None) -> LoadedSettings:
    """Read and check routes.yaml, collecting every problem rather than raising, for
    `mch-engine check`. `env` defaults to os.environ."""
    environ = secret_environment(env)  # `X_FILE` for an unset `X` (core/secrets.py)
    source = Path(path)
    loaded = LoadedSettings(filename=str(path), base_dir=source.resolve().parent)
    try:
        text = source.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        loaded.problems.append(ConfigError(loaded.filename, None, "file not found"))
        return loaded
    except UnicodeDecodeError as exc:
        message = f"not valid UTF-8 (byte offset {exc.start}); save the file as UTF-8"
        loaded.problems.append(ConfigError(loaded.filename, None, message))
        return loaded
    except OSError as exc:
        loaded.problems.append(ConfigError(loaded.filename, None, f"cannot read: {exc}"))
        return loaded

    parsed = parse_yaml(text, loaded.filename, environ)
    loaded.data, loaded.lines = parsed.data, parsed.lines
    loaded.problems.extend(parsed.problems)
    if not parsed.complete:
        return loaded
    if parsed.data is None:
        loaded.problems.append(ConfigError(loaded.filename, 1, "the file is empty"))
        return loaded
    try:
        _fill_env_defaults(loaded.data, environ)
    except SecretFileError as exc:
        loaded.problems.append(ConfigError(loaded.filename, None, str(exc)))
        return loaded
    loaded.roots = config_roots(loaded.base_dir, _allowed_paths(loaded.data))

    settings, problems = try_validate(
        settings_model(), loaded.data, loaded.lines, loaded.filename, skip=parsed.unresolved
    )
    loaded.problems.extend(problems)
    loaded.problems.extend(_reference_problems(loaded, parsed.unresolved))
    if settings is not None:
        settings._base_dir = loaded.base_dir
        settings._source = source.resolve()
        loaded.problems.extend(_destination_file_problems(loaded, settings))
        loaded.problems.extend(_channel_problems(loaded, settings))
        loaded.problems.extend(_mapping_needed_problems(loaded, settings))
        loaded.problems.extend(_record_type_problems(loaded, settings))
        if not loaded.problems:
            loaded.settings = settings
    return loaded


def load_settings(path: str | Path, env: Mapping[str, str] | None = None) -> Settings:
    """Load routes.yaml for the engine; raises ConfigErrors listing every problem in file
    order. `env` defaults to os.environ."""
    loaded = read_settings(path, env)
    if loaded.problems or loaded.settings is None:
        raise ConfigErrors(sorted(loaded.problems, key=lambda e: e.line or 0))
    return loaded.settings
