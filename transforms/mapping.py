"""The declarative mapping language: YAML files that say where each record field comes from.

A mapping file lists output records; each record names its type, a stable
`record_id`, the `person_key` it belongs to, its `event_time` and its `fields`.
A field is one of

    PID-5[1].1                               an HL7 path (first value)
    "lab:{MSH-4}:{OBR-3.1}"                  a template: text with paths in braces
    PID-3[*].1 where PID-3[*].5 == ID        the repetition whose CX.5 is ID
    {path: PID-7, convert: hl7_date}         a path through a named converter
    {first: [EVN-2, MSH-7], convert: ...}    the first path that has a value
    {template: "lab:{MSH-4}:{OBR-3.1}"}      text with paths in braces
    {const: 42}                              a constant
    {fields: {...}}                          a nested object
    {each: OBX, fields: {...}}               one object per OBX (paths on OBX read that one)
    {each: PID-3[*], fields: {id: .1}}       one object per repetition (.N = its components)

and may add `default:` (used when empty) and `required: true`. A file is compiled
once, when the engine starts or `mch-engine check` runs, so a bad path or unknown
converter fails there, not on the first message. Rules that fail on a message
raise `MappingError` naming the file, line, path, value and rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from engine.errors import ConfigError, ConfigErrors, MappingError
from engine.yaml_lines import LineMap, load_yaml
from transforms.converters import CONVERTERS
from transforms.hl7v2 import HL7_NULL, Delimiters, Message, Segment, parse_path, unescape

_WHERE = re.compile(r"^(?P<value>\S+)\s+where\s+(?P<cond>\S+)\s*(?P<op>==|!=)\s*(?P<lit>.+)$")
_TEMPLATE_PART = re.compile(r"\{([^{}]+)\}")
_RELATIVE = re.compile(r"^(?:\.(\d+))(?:\.(\d+))?$")

RECORD_KEYS = {"type", "record_id", "person_key", "event_time", "fields"}
SPEC_KEYS = {
    "path",
    "first",
    "template",
    "const",
    "fields",
    "each",
    "convert",
    "default",
    "required",
}


@dataclass(slots=True)
class Ctx:
    """Where a path is evaluated: the message, and the segment / repetition being iterated."""

    message: Message
    segment: Segment | None = None
    repetition: str | None = None


Getter = Callable[[Ctx], Any]


@dataclass(frozen=True, slots=True)
class RecordRule:
    type: str
    record_id: Getter
    person_key: Getter
    event_time: Getter
    fields: Getter
    line: int | None


@dataclass(frozen=True, slots=True)
class MappedRecord:
    """One canonical record produced from a message, before it is routed."""

    record_type: str
    record_id: str
    person_key: str | None
    event_time: str | None
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Mapping:
    file: str
    records: tuple[RecordRule, ...]

    def apply(self, message: Message) -> list[MappedRecord]:
        out: list[MappedRecord] = []
        for rule in self.records:
            ctx = Ctx(message)
            record_id = rule.record_id(ctx)
            if not record_id:
                raise MappingError(
                    mapping=self.file, line=rule.line, path="record_id", value=record_id,
                    rule=f"{rule.type} needs a record_id and the message gives none",
                )  # fmt: skip
            out.append(
                MappedRecord(
                    record_type=rule.type,
                    record_id=str(record_id),
                    person_key=_str_or_none(rule.person_key(ctx)),
                    event_time=_str_or_none(rule.event_time(ctx)),
                    record=rule.fields(ctx),
                )
            )
        return out


def load_mapping(path: str | FsPath, display: str | None = None) -> Mapping:
    """Read and compile a mapping file; raises ConfigErrors listing every problem."""
    file = display or str(path)
    try:
        text = FsPath(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigErrors(
            [ConfigError(file, None, f"cannot read mapping file: {exc.strerror}")]
        ) from exc
    data, lines = load_yaml(text, file)
    return _Compiler(file, lines).mapping(data)


class _Compiler:
    def __init__(self, file: str, lines: LineMap) -> None:
        self.file = file
        self.lines = lines
        self.errors: list[ConfigError] = []

    def mapping(self, data: Any) -> Mapping:
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise ConfigErrors(
                [ConfigError(self.file, 1, "a mapping file needs a 'records:' list")]
            )
        unknown = set(data) - {"records", "mapping", "description", "version"}
        for key in sorted(unknown):
            self.error((key,), f"unknown key '{key}' (expected mapping, description, records)")
        rules = [self.record(r, ("records", i)) for i, r in enumerate(data["records"])]
        if self.errors:
            raise ConfigErrors(self.errors)
        return Mapping(self.file, tuple(r for r in rules if r is not None))

    def error(self, loc: tuple[Any, ...], message: str) -> None:
        self.errors.append(ConfigError(self.file, self.lines.line_of(loc), message))

    def record(self, spec: Any, loc: tuple[Any, ...]) -> RecordRule | None:
        if not isinstance(spec, dict):
            self.error(loc, "each record must be a mapping with type, record_id and fields")
            return None
        for key in sorted(set(spec) - RECORD_KEYS):
            self.error(
                (*loc, key), f"unknown key '{key}' in a record (expected {sorted(RECORD_KEYS)})"
            )
        for key in ("type", "record_id", "fields"):
            if key not in spec:
                self.error(loc, f"record is missing '{key}'")
        if not isinstance(spec.get("fields", {}), dict):
            self.error((*loc, "fields"), "'fields' must be a mapping of field name to rule")
            return None
        event_spec = spec.get("event_time", {"path": "MSH-7", "convert": "hl7_datetime"})
        return RecordRule(
            type=str(spec.get("type", "")),
            record_id=self.optional(spec, "record_id", loc),
            person_key=self.optional(spec, "person_key", loc),
            event_time=self.value(event_spec, (*loc, "event_time")),
            fields=self.obj(spec.get("fields", {}), (*loc, "fields")),
            line=self.lines.line_of(loc),
        )

    def optional(self, spec: dict[str, Any], key: str, loc: tuple[Any, ...]) -> Getter:
        if key not in spec:
            return lambda ctx: None
        return self.value(spec[key], (*loc, key))

    def obj(self, fields: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        getters = {name: self.value(spec, (*loc, name)) for name, spec in fields.items()}

        def build(ctx: Ctx) -> dict[str, Any]:
            return {name: get(ctx) for name, get in getters.items()}

        return build

    def value(self, spec: Any, loc: tuple[Any, ...]) -> Getter:
        if isinstance(spec, str):
            return self.text_getter(spec, loc)
        if isinstance(spec, int | float) and not isinstance(spec, bool):
            hint = "quote relative paths ('.1'); use const: for constants"
            self.error(loc, f"{spec!r} is a number, not a rule: {hint}")
            return lambda ctx: None
        if not isinstance(spec, dict):
            return lambda ctx, v=spec: v
        for key in sorted(set(spec) - SPEC_KEYS):
            self.error(
                (*loc, key),
                f"unknown key '{key}' in a field rule (expected one of {sorted(SPEC_KEYS)})",
            )
        line = self.lines.line_of(loc)
        convert = spec.get("convert")
        if convert is not None and convert not in CONVERTERS:
            self.error(
                (*loc, "convert"),
                f"unknown converter '{convert}' (known: {', '.join(sorted(CONVERTERS))})",
            )
            convert = None
        if "each" in spec:
            inner = self.obj(spec.get("fields") or {}, (*loc, "fields"))
            return self.each_getter(str(spec["each"]), inner, (*loc, "each"))
        if "fields" in spec:
            return self.obj(spec["fields"], (*loc, "fields"))
        if "const" in spec:
            return lambda ctx, v=spec["const"]: v
        if "template" in spec:
            base = self.template_getter(str(spec["template"]), (*loc, "template"))
        elif "first" in spec:
            options = spec["first"] if isinstance(spec["first"], list) else [spec["first"]]
            getters = [self.text_getter(str(p), (*loc, "first", i)) for i, p in enumerate(options)]

            def base(ctx: Ctx, getters: list[Getter] = getters) -> Any:
                for g in getters:
                    v = g(ctx)
                    if v not in (None, "", []):
                        return v
                return None
        elif "path" in spec:
            base = self.path_getter(str(spec["path"]), (*loc, "path"), None)
        else:
            self.error(
                loc, "a field rule needs one of path, first, template, const, fields or each"
            )
            return lambda ctx: None
        return self.finish(base, spec, convert, line, loc)

    def finish(
        self,
        base: Getter,
        spec: dict[str, Any],
        convert: str | None,
        line: int | None,
        loc: tuple[Any, ...],
    ) -> Getter:
        fn = CONVERTERS[convert] if convert else None
        default = spec.get("default")
        required = bool(spec.get("required", False))
        label = str(spec.get("path") or spec.get("template") or spec.get("first") or loc[-1])
        file = self.file

        def run(ctx: Ctx) -> Any:
            value = base(ctx)
            if value in (None, "", []):
                if default is not None:
                    return default
                if required:
                    raise MappingError(
                        mapping=file,
                        line=line,
                        path=label,
                        value=value,
                        rule="required value is empty",
                    )
                return None
            if fn is None:
                return value
            try:
                if isinstance(value, list):
                    return [fn(v) if v else None for v in value]
                return fn(value)
            except ValueError as exc:
                raise MappingError(
                    mapping=file, line=line, path=label, value=value, rule=f"{convert}: {exc}"
                ) from None

        return run

    def text_getter(self, text: str, loc: tuple[Any, ...]) -> Getter:
        """A bare string is a path, or a template when it has {braces}."""
        if "{" in text:
            return self.template_getter(text, loc)
        return self.path_getter(text, loc, None)

    def template_getter(self, template: str, loc: tuple[Any, ...]) -> Getter:
        parts: list[str | Getter] = []
        pos = 0
        for m in _TEMPLATE_PART.finditer(template):
            parts.append(template[pos : m.start()])
            parts.append(self.path_getter(m.group(1).strip(), loc, None))
            pos = m.end()
        parts.append(template[pos:])

        def render(ctx: Ctx) -> str | None:
            out = []
            for part in parts:
                if isinstance(part, str):
                    out.append(part)
                    continue
                value = part(ctx)
                if value in (None, "", []):
                    return None  # an id with a hole in it is no id
                out.append(str(value))
            return "".join(out)

        return render

    def path_getter(self, expr: str, loc: tuple[Any, ...], convert: str | None) -> Getter:
        expr = expr.strip()
        m = _WHERE.match(expr)
        try:
            if m:
                return _where_getter(
                    m.group("value"), m.group("cond"), m.group("op"), _literal(m.group("lit"))
                )
            if expr.startswith("."):
                return _relative_getter(expr)
            return _path_getter(expr)
        except ValueError as exc:
            self.error(loc, f"bad HL7 path '{expr}': {exc}")
            return lambda ctx: None

    def each_getter(self, expr: str, inner: Getter, loc: tuple[Any, ...]) -> Getter:
        try:
            path = parse_path(expr if "-" in expr else f"{expr.split('[')[0]}[*]-1")
        except ValueError as exc:
            self.error(loc, f"bad 'each' path '{expr}': {exc}")
            return lambda ctx: []
        if "-" not in expr:  # each segment occurrence
            name = path.segment

            def per_segment(ctx: Ctx) -> list[Any]:
                return [inner(Ctx(ctx.message, seg)) for seg in ctx.message.segments(name)]

            return per_segment

        def per_repetition(ctx: Ctx) -> list[Any]:
            seg = _segment_for(ctx, path)
            if seg is None:
                return []
            return [inner(Ctx(ctx.message, seg, rep)) for rep in seg.repetitions(path.field) if rep]

        return per_repetition


def _segment_for(ctx: Ctx, path: Any) -> Segment | None:
    if ctx.segment is not None and ctx.segment.name == path.segment:
        return ctx.segment
    return ctx.message.segment(path.segment, path.occurrence or 1)


def _clean(value: Any) -> Any:
    return None if value is HL7_NULL else value


def _path_getter(expr: str) -> Getter:
    path = parse_path(expr)
    if path.repetition is None or path.occurrence is None:

        def many(ctx: Ctx) -> Any:
            if (
                ctx.segment is not None
                and ctx.segment.name == path.segment
                and path.occurrence is not None
            ):
                seg = ctx.segment
                reps = range(1, len(seg.repetitions(path.field)) + 1)
                return [
                    _clean(seg.get(path.field, r, path.component, path.subcomponent)) for r in reps
                ]
            return [_clean(v) for v in ctx.message.values(expr)]

        return many

    def one(ctx: Ctx) -> Any:
        seg = _segment_for(ctx, path)
        if seg is None:
            return None
        return _clean(seg.get(path.field, path.repetition, path.component, path.subcomponent))

    return one


def _where_getter(value_expr: str, cond_expr: str, op: str, literal: str) -> Getter:
    vpath, cpath = parse_path(value_expr), parse_path(cond_expr)
    if vpath.segment != cpath.segment or vpath.field != cpath.field:
        example = "PID-3[*].1 where PID-3[*].5 == ID"
        raise ValueError(f"the value and the condition must be on the same field (e.g. {example})")
    want_equal = op == "=="

    def select(ctx: Ctx) -> Any:
        seg = _segment_for(ctx, vpath)
        if seg is None:
            return None
        for r in range(1, len(seg.repetitions(vpath.field)) + 1):
            got = _clean(seg.get(cpath.field, r, cpath.component, cpath.subcomponent)) or ""
            if (got == literal) == want_equal:
                return _clean(seg.get(vpath.field, r, vpath.component, vpath.subcomponent))
        return None

    return select


def _relative_getter(expr: str) -> Getter:
    m = _RELATIVE.match(expr)
    if not m:
        raise ValueError(
            "a relative path is .COMPONENT or .COMPONENT.SUBCOMPONENT, e.g. .1 or .4.1"
        )
    comp, sub = int(m.group(1)), int(m.group(2)) if m.group(2) else None

    def component(ctx: Ctx) -> Any:
        if ctx.repetition is None:
            return None
        d: Delimiters = ctx.message.delimiters
        parts = ctx.repetition.split(d.component)
        if comp > len(parts):
            return None
        value = parts[comp - 1]
        if sub is not None:
            subs = value.split(d.subcomponent)
            value = subs[sub - 1] if sub <= len(subs) else ""
        if value == '""':
            return None
        return unescape(value, d) or None

    return component


def _literal(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _str_or_none(value: Any) -> str | None:
    return None if value in (None, "") else str(value)
