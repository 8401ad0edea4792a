"""YAML loading that remembers line numbers, plus `${VAR}` substitution and pydantic errors.

Interface engineers fix configuration from error lines, so every value keeps the line it came
from and every problem is reported as `file:line: location: message`. Generic on purpose:
routes.yaml and the mapping files share it.

Locations are tuples of mapping keys and sequence indexes, e.g. `("routes", 0, "to", 1)`.

`${VAR}` substitution happens after parsing, on string scalars only (never on keys), so lines
stay right and YAML syntax cannot be injected through the environment. Substituted values are
always strings (`port: ${P}` gives `"2575"`); pydantic coerces them to the field type.
`${VAR:-default}` uses the default when VAR is unset or empty, as the shell does; `$${` is a
literal `${`; a default cannot contain `}`. Inside a flow collection (`{...}` or `[...]`) YAML
needs such values quoted: `journal: {max_batch: "${MCH_BATCH:-500}"}`.

Aliases are expanded into plain data, so a few lines of anchors can stand for billions of
values (the "billion laughs"): a document whose expanded size passes `MAX_NODES`, or whose
nesting passes `MAX_DEPTH`, is refused with one `file:line` error before anything is built.

Failures raise `ConfigError` when there is one problem and `ConfigErrors` when there are
several (`validate` always raises `ConfigErrors`); `problems_of` turns either into a list.
"""

from __future__ import annotations

import difflib
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, TypeVar, Union, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from core.errors import ConfigError, ConfigErrors
from core.secrets import SecretFileError

__all__ = [
    "MAX_DEPTH",
    "MAX_NODES",
    "LineMap",
    "Loc",
    "ParsedYaml",
    "dotted",
    "hint",
    "load_yaml",
    "parse_yaml",
    "problems_of",
    "raise_problems",
    "try_validate",
    "validate",
]

Loc = tuple[Any, ...]
"""A location path: mapping keys (normally `str`) and sequence indexes (`int`)."""

M = TypeVar("M", bound=BaseModel)

MAX_NODES = 100_000
"""Values a document may hold once its aliases are expanded; shipped files hold under 1,000."""
MAX_DEPTH = 100
"""Nesting a document may have; configuration is a few levels deep."""

_MERGE_TAG = "tag:yaml.org,2002:merge"
_STR_TAG = "tag:yaml.org,2002:str"


class LineMap:
    """1-based line of every mapping entry and sequence item of one YAML document."""

    def __init__(self, lines: Mapping[Loc, int] | None = None) -> None:
        self._lines: dict[Loc, int] = dict(lines or {})

    def set(self, loc: Loc, line: int) -> None:
        """Record where a location is written."""
        self._lines[tuple(loc)] = line

    def line_of(self, loc: Iterable[Any]) -> int | None:
        """Line of `loc`, else of its nearest enclosing known location (errors still point
        somewhere useful for keys that are missing or were never written)."""
        path = tuple(loc)
        while True:
            line = self._lines.get(path)
            if line is not None:
                return line
            if not path:
                return None
            path = path[:-1]

    def __contains__(self, loc: object) -> bool:
        return loc in self._lines

    def __len__(self) -> int:
        return len(self._lines)


@dataclass
class ParsedYaml:
    """What `parse_yaml` found: data and lines, plus every problem instead of an exception."""

    data: Any
    lines: LineMap
    problems: list[ConfigError] = field(default_factory=list)
    unresolved: set[Loc] = field(default_factory=set)
    """Locations whose `${VAR}` could not be expanded; later checks skip them to avoid
    reporting the same mistake twice."""
    complete: bool = True
    """False when the text is not YAML at all: data is None and nothing else can be checked."""


# --------------------------------------------------------------------------- locations


def dotted(loc: Iterable[Any]) -> str:
    """Render a location the way an engineer reads it: `routes[0].to[1]`, `channels.lis`."""
    out = ""
    for part in loc:
        if isinstance(part, int) and not isinstance(part, bool):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _where(loc: Loc) -> str:
    text = dotted(loc)
    return f"{text}: " if text else ""


def hint(word: str, known: Iterable[str]) -> str:
    """A ` (did you mean 'x'?)` or ` (known: a, b)` suffix, so typos fix themselves."""
    names = sorted({str(k) for k in known})
    if not names:
        return " (none are defined)"
    close = difflib.get_close_matches(str(word), names, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    if len(names) <= 12:
        return f" (known: {', '.join(names)})"
    return ""


def problems_of(exc: ConfigError | ConfigErrors) -> list[ConfigError]:
    """Either configuration exception as a flat list."""
    return list(exc.errors) if isinstance(exc, ConfigErrors) else [exc]


def raise_problems(problems: Sequence[ConfigError]) -> None:
    """Raise one `ConfigError` alone, several as `ConfigErrors`; do nothing for none."""
    if len(problems) == 1:
        raise problems[0]
    if problems:
        raise ConfigErrors(list(problems))


# --------------------------------------------------------------------------- ${VAR}

_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{")


def _expand(text: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """Expand `${VAR}`, `${VAR:-default}` and `$${`; return the text and what went wrong."""
    problems: list[str] = []

    def replace(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            end = text.find("}", match.start())
            shown = text[match.start() : end + 1] if end >= 0 else text[match.start() :]
            problems.append(
                f"malformed variable reference {shown!r} "
                "(write ${NAME} or ${NAME:-default}; $${ is a literal ${)"
            )
            return token
        try:
            value = env.get(name)
        except SecretFileError as exc:  # a NAME_FILE it may not use (core/secrets.py)
            problems.append(str(exc))
            return ""
        if not value and default is not None:
            return default
        if value is None:
            problems.append(
                f"environment variable {name} is not set (use ${{{name}:-default}} for a fallback)"
            )
            return ""
        return value

    return _REF.sub(replace, text), problems


# --------------------------------------------------------------------------- parsing


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Builder:
    """Turns composed nodes into plain Python data, recording lines on the way."""

    def __init__(self, filename: str, env: Mapping[str, str] | None) -> None:
        self.filename = filename
        self.env = env
        self.lines = LineMap()
        self.problems: list[ConfigError] = []
        self.unresolved: set[Loc] = set()
        self._scalars = yaml.SafeLoader("")
        self._active: set[int] = set()

    def close(self) -> None:
        self._scalars.dispose()

    def problem(self, line: int | None, loc: Loc, message: str) -> None:
        self.problems.append(ConfigError(self.filename, line, _where(loc) + message))

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, loc)
        if id(node) in self._active:
            self.problem(_line(node), loc, "an alias refers to itself")
            return None
        self._active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                items = []
                for index, item in enumerate(node.value):
                    self.lines.set((*loc, index), _line(item))
                    items.append(self.build(item, (*loc, index)))
                return items
            return self._mapping(node, loc)
        finally:
            self._active.discard(id(node))

    def _scalar(self, node: yaml.ScalarNode, loc: Loc) -> Any:
        ok, value = self._construct(node, loc)
        if not ok:
            return None
        if self.env is not None and node.tag == _STR_TAG and isinstance(value, str):
            value, problems = _expand(value, self.env)
            for message in problems:
                self.problem(_line(node), loc, message)
            if problems:
                self.unresolved.add(loc)
        return value

    def _key(self, node: yaml.Node, loc: Loc) -> tuple[bool, Any]:
        if not isinstance(node, yaml.ScalarNode):
            self.problem(_line(node), loc, "a mapping key must be a plain value, not a collection")
            return False, None
        return self._construct(node, loc)

    def _construct(self, node: yaml.ScalarNode, loc: Loc) -> tuple[bool, Any]:
        """(True, value), or (False, None) with a problem at the node's line: a bad tag, or a
        date YAML recognises by its shape that the calendar does not have (`1994-02-31`)."""
        try:
            return True, self._scalars.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            self.problem(_line(node), loc, str(exc.problem or exc))
        except ValueError as exc:
            self.problem(_line(node), loc, f"{node.value!r} is not a valid date or time ({exc})")
        return False, None

    def _merged_pairs(self, node: yaml.Node, loc: Loc) -> list[tuple[yaml.Node, yaml.Node]]:
        """Pairs brought in by `<<: *anchor`, in YAML's priority order."""
        if isinstance(node, yaml.MappingNode):
            own = [(k, v) for k, v in node.value if k.tag != _MERGE_TAG]
            for k, v in node.value:
                if k.tag == _MERGE_TAG:
                    own.extend(self._merged_pairs(v, loc))
            return own
        if isinstance(node, yaml.SequenceNode):
            pairs: list[tuple[yaml.Node, yaml.Node]] = []
            for item in node.value:
                pairs.extend(self._merged_pairs(item, loc))
            return pairs
        self.problem(_line(node), loc, "'<<' must merge a mapping or a list of mappings")
        return []

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        result: dict[Any, Any] = {}
        first: dict[Any, int] = {}
        merges: list[yaml.Node] = []
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE_TAG:
                merges.append(value_node)
                continue
            ok, key = self._key(key_node, loc)
            if not ok:
                continue
            key_line = _line(key_node)
            if key in first:
                self.problem(key_line, loc, f"duplicate key {key!r} (first at line {first[key]})")
            else:
                first[key] = key_line
            self._entry(result, key, key_line, value_node, loc)
        for merge in merges:
            if id(merge) in self._active:
                self.problem(_line(merge), loc, "an alias refers to itself")
                continue
            for key_node, value_node in self._merged_pairs(merge, loc):
                ok, key = self._key(key_node, loc)
                if ok and key not in result:
                    self._entry(result, key, _line(key_node), value_node, loc)
        return result

    def _entry(self, result: dict[Any, Any], key: Any, key_line: int, value: yaml.Node, loc: Loc) -> None:
        child = (*loc, key)
        # A scalar's own line is the most precise; a collection is best shown by its key.
        line = _line(value) if isinstance(value, yaml.ScalarNode) else key_line
        self.lines.set(child, line)
        result[key] = self.build(value, child)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _oversize(root: yaml.Node) -> tuple[int, str] | None:
    """(line, message) when `root` expands past `MAX_NODES` or nests past `MAX_DEPTH`.

    Sizes are memoised per node, so the walk costs the document's length, not its expansion;
    a node on its own path (an alias to itself) counts once, the builder reports it."""
    sizes: dict[int, int] = {}
    active: set[int] = set()
    found: list[tuple[int, str]] = []

    def size(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active or found:
            return 1
        if depth > MAX_DEPTH:
            found.append((_line(node), f"nested more than {MAX_DEPTH} levels deep"))
            return 1
        active.add(key)
        total = 1 + sum(size(child, depth + 1) for child in _children(node))
        active.discard(key)
        if total > MAX_NODES and not found:
            # The first node to pass the bound, walking bottom-up, is where aliases multiply.
            message = f"aliases expand to more than {MAX_NODES:,} values; write the values out"
            found.append((_line(node), message))
        sizes[key] = total
        return total

    size(root, 0)
    return found[0] if found else None


def _syntax_message(exc: yaml.YAMLError, text: str) -> tuple[int | None, str]:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return None, f"invalid YAML: {exc}"
    mark = exc.problem_mark or exc.context_mark
    line = int(mark.line) + 1 if mark is not None else None
    message = f"invalid YAML: {exc.problem or exc}"
    if exc.context:
        where = ""
        if exc.context_mark is not None and exc.context_mark.line + 1 != line:
            where = f" at line {exc.context_mark.line + 1}"
        message += f" ({exc.context}{where})"
    if "'\\t'" in message:
        message += "; indent with spaces, not tabs"
    elif exc.context == "while scanning an alias":
        message += '; quote a literal asterisk: "*"'
    elif line is not None and "${" in "".join(text.splitlines()[max(line - 2, 0) : line]):
        message += '; inside { } or [ ], quote values that use ${...}: "${VAR}"'
    return line, message


def parse_yaml(text: str, filename: str, env: Mapping[str, str] | None = None) -> ParsedYaml:
    """Parse one YAML document, collecting every problem instead of stopping at the first,
    so `check` can report everything in one run."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        line, message = _syntax_message(exc, text)
        return ParsedYaml(None, LineMap(), [ConfigError(filename, line, message)], complete=False)
    except RecursionError:
        message = f"invalid YAML: nested more than {MAX_DEPTH} levels deep"
        return ParsedYaml(None, LineMap(), [ConfigError(filename, None, message)], complete=False)
    oversize = None if root is None else _oversize(root)
    if oversize is not None:
        line, message = oversize
        return ParsedYaml(None, LineMap(), [ConfigError(filename, line, message)], complete=False)
    builder = _Builder(filename, env)
    try:
        if root is None:
            return ParsedYaml(None, LineMap({(): 1}))
        builder.lines.set((), _line(root))
        data = builder.build(root, ())
    finally:
        builder.close()
    return ParsedYaml(data, builder.lines, builder.problems, builder.unresolved)


def load_yaml(text: str, filename: str, env: Mapping[str, str] | None = None) -> tuple[Any, LineMap]:
    """Parse one YAML document into plain data and its `LineMap`; `${VAR}` is expanded only
    when `env` is given. Raises ConfigError (one problem) or ConfigErrors (several)."""
    parsed = parse_yaml(text, filename, env)
    raise_problems(parsed.problems)
    return parsed.data, parsed.lines


# --------------------------------------------------------------------------- validation


def _unannotate(tp: Any) -> Any:
    while get_origin(tp) is Annotated:
        tp = get_args(tp)[0]
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _union_members(tp: Any) -> list[Any]:
    tp = _unannotate(tp)
    if get_origin(tp) in (Union, types.UnionType):
        return [_unannotate(m) for m in get_args(tp) if m is not type(None)]
    return [tp]


def _tags(model: type[BaseModel], key: str) -> list[str]:
    info = model.model_fields.get(key)
    if info is None:
        return []
    tp = _unannotate(info.annotation)
    return [str(v) for v in get_args(tp)] if get_origin(tp) is Literal else []


def _resolve(tp: Any, data: Any) -> Any:
    """Narrow a union to the member that `data` would validate as (by `type` tag or shape)."""
    members = _union_members(tp)
    if len(members) == 1:
        return members[0]
    models = [m for m in members if _is_model(m)]
    if isinstance(data, dict):
        for model in models:
            if str(data.get("type")) in _tags(model, "type"):
                return model
        if len(models) == 1:
            return models[0]
        for member in members:
            if get_origin(member) in (dict, Mapping):
                return member
    if isinstance(data, list):
        for member in members:
            if get_origin(member) in (list, tuple, set, frozenset, Sequence):
                return member
    return tp


def _yaml_key(name: str, info: FieldInfo) -> str:
    """The key a field is written as in YAML: its (validation) alias, else its name."""
    if isinstance(info.validation_alias, str):
        return info.validation_alias
    return info.alias or name


def _field(model: type[BaseModel], key: Any) -> tuple[str, Any] | None:
    for name, info in model.model_fields.items():
        if key in (_yaml_key(name, info), name):
            return _yaml_key(name, info), info.annotation
    return None


def _has(data: Any, part: Any) -> bool:
    """Whether `data[part]` exists (a mapping key or an in-range sequence index)."""
    if isinstance(data, dict):
        return part in data
    return isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)


def _walk(root: type[BaseModel], path: Loc, data: Any) -> tuple[Any, Any, str | None]:
    """Follow `path` through the model's annotations: (annotation, data, last field name)."""
    tp: Any = root
    current = data
    field_name: str | None = None
    for part in path:
        target = _resolve(tp, current)
        if _is_model(target):
            found = _field(target, part)
            if found is None:
                return None, None, field_name
            field_name, tp = found
        else:
            origin, args = get_origin(target), get_args(target)
            if origin in (list, tuple, set, frozenset, Sequence) and args:
                tp = args[0]
            elif origin in (dict, Mapping) and len(args) == 2:
                tp = args[1]
            else:
                return None, None, field_name
        current = current[part] if _has(current, part) else None
    return tp, current, field_name


def _data_path(loc: Sequence[Any], data: Any) -> Loc:
    """Map a pydantic error location onto the data, dropping the union tags pydantic inserts
    (`("channels", "lis", "mllp", "listen")` becomes `("channels", "lis", "listen")`)."""
    out: list[Any] = []
    current = data
    last = len(loc) - 1
    for index, part in enumerate(loc):
        if part == "[key]":
            continue
        if _has(current, part):
            out.append(part)
            current = current[part]
        elif index == last:
            out.append(part)  # a key that is missing, or not allowed
    return tuple(out)


def _describe(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")


def _redact(text: str) -> str:
    """Hide URL passwords: error lines end up in terminals, CI logs and tickets."""
    return _URL_PASSWORD.sub(r"\1***@", text)


def _known_keys(root: type[BaseModel], parent: Loc, data: Any) -> list[str]:
    """Keys the model at `parent` accepts, as written in YAML (aliases first)."""
    tp, current, _ = _walk(root, parent, data)
    model = _resolve(tp, current)
    if not _is_model(model):
        return []
    return [_yaml_key(name, info) for name, info in model.model_fields.items()]


def _misspelt(root: type[BaseModel], errors: Iterable[ErrorDetails], data: Any) -> set[Loc]:
    """Locations of required keys that look misspelt elsewhere in the same mapping: the
    `unknown key` line already says it, so `missing required key` would be noise."""
    found: set[Loc] = set()
    for error in errors:
        path = _data_path(error["loc"], data)
        if error["type"] == "extra_forbidden" and path:
            known = _known_keys(root, path[:-1], data)
            close = difflib.get_close_matches(str(path[-1]), known, n=1, cutoff=0.6)
            if close:
                found.add((*path[:-1], close[0]))
    return found


def _message(root: type[BaseModel], error: ErrorDetails, data: Any) -> tuple[Loc, Loc, str]:
    """(where to point, location to print, message) for one pydantic error."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    path = _data_path(error["loc"], data)
    value = error.get("input")

    if kind == "extra_forbidden" and path:
        parent, key = path[:-1], path[-1]
        known = _known_keys(root, parent, data)
        return path, parent, f"unknown key {key!r}{hint(str(key), known)}"
    if kind == "missing" and path:
        return path, path[:-1], f"missing required key {path[-1]!r}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        key = str(ctx.get("discriminator", "'type'")).strip("'")
        tp, _, field_name = _walk(root, path, data)
        tags = [t for m in _union_members(tp) if _is_model(m) for t in _tags(m, key)]
        if not tags:
            tags = re.findall(r"'([^']*)'", str(ctx.get("expected_tags", "")))
        noun = f"{field_name.removesuffix('s')} " if field_name else ""
        if kind == "union_tag_not_found":
            return path, path, f"missing required key {key!r} (one of: {', '.join(tags)})"
        tag = str(ctx.get("tag"))
        close = difflib.get_close_matches(tag, tags, n=1, cutoff=0.6)
        suggestion = f"; did you mean {close[0]!r}?" if close else ""
        message = f"unknown {noun}{key} {tag!r} (known: {', '.join(tags)}{suggestion})"
        return (*path, key), (*path, key), message
    if kind in ("value_error", "assertion_error") and "error" in ctx:
        return path, path, str(ctx["error"])
    if kind in ("model_type", "model_attributes_type", "dict_type", "mapping_type"):
        return path, path, f"expected a mapping, got {_describe(value)}"
    if kind in ("list_type", "tuple_type", "set_type"):
        return path, path, f"expected a list, got {_describe(value)}"
    text = error["msg"]
    text = text[:1].lower() + text[1:]
    if not isinstance(value, dict | list):
        text += f", got {_describe(value)}"
    if kind == "literal_error":
        options = re.findall(r"'([^']*)'", str(ctx.get("expected", "")))
        close = difflib.get_close_matches(str(value), options, n=1, cutoff=0.6)
        if close:
            text += f" (did you mean {close[0]!r}?)"
    return path, path, text


def _under(path: Loc, prefixes: Iterable[Loc]) -> bool:
    return any(path[: len(prefix)] == prefix for prefix in prefixes)


def try_validate(
    model: type[M],
    data: Any,
    lines: LineMap,
    filename: str,
    *,
    skip: Iterable[Loc] = (),
) -> tuple[M | None, list[ConfigError]]:
    """Validate and return (instance or None, problems); problems under a `skip` location
    (for example an unexpanded `${VAR}`) are dropped because they were already reported."""
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        skipped = list(skip)
        errors = exc.errors()
        misspelt = _misspelt(model, errors, data)
        problems: list[ConfigError] = []
        for error in errors:
            point, shown, message = _message(model, error, data)
            if error["type"] == "missing" and point in misspelt:
                continue
            if error["type"] != "extra_forbidden" and _under(point, skipped):
                continue
            line = lines.line_of(point)
            problems.append(ConfigError(filename, line, _redact(_where(shown) + message)))
        return None, problems


def validate(model: type[M], data: Any, lines: LineMap, filename: str) -> M:
    """Validate `data` as `model`; on failure raise ConfigErrors with one `file:line` error
    per pydantic error, worded for the person editing the file."""
    instance, problems = try_validate(model, data, lines, filename)
    if instance is None:
        raise ConfigErrors(problems)
    return instance
