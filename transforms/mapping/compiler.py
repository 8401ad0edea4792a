"""The declarative mapping language: YAML files that say where each record field comes from.

A mapping file lists output records; each names its `type`, a stable `record_id`,
its `event_time` and its `fields`, and may say `when:` it applies and `each:` group
it repeats over. The rules a field may use are documented in docs/mapping.md; in
short: HL7 paths, templates, `first:`, `where` selections, converters, typed OBX
values, code tables, quantities with units, derived values, `each:` over segment
groups or repetitions, `join:`, `default:`, `required:`, `when:`.

A file is compiled once, when the engine starts or `mch-engine check` runs, so a
bad path, condition, code table or converter fails there, not on the first
message. Rules that fail on a message raise `MappingError` naming the file, line,
path, value and rule. Mappings read HL7 messages (`input: hl7`, the default) or
database rows (`input: row`, where bare names are column names).

This module compiles a file's structure (records, fields, `each:`, `first:`, includes,
conditions); value_rules.py the rules that read one value; getters.py is what runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from core.config_paths import ConfigRoots
from core.errors import ConfigError, ConfigErrors, MappingError
from core.yaml_lines import LineMap, load_yaml
from transforms.converters import CONVERTERS
from transforms.hl7v2 import SEGMENT_NAME, Message, parse_path
from transforms.mapping import codegen
from transforms.mapping.codegen import attach
from transforms.mapping.codetables import CodeTable
from transforms.mapping.conditions import ConditionError, compile_condition
from transforms.mapping.getters import (
    EMPTY,
    Ctx,
    Getter,
    _column_getter,
    _const,
    _groups,
    _path_getter,
    _segment_for,
    _table_results,
)
from transforms.mapping.targets import Target
from transforms.mapping.value_rules import ValueRules

FILE_KEYS = {"mapping", "description", "version", "input", "records"}
RECORD_KEYS = {"type", "record_id", "event_time", "fields", "when", "each", "description"}
SPEC_KEYS = {
    "path", "column", "first", "template", "const", "fields", "each", "value", "where",
    "convert", "type_from", "table", "table_column", "quantity", "to_unit", "derive", "args",
    "join", "default", "required", "when", "obx", "obx_field", "include", "take",
}  # fmt: skip


@dataclass(frozen=True, slots=True)
class RecordRule:
    type: str
    record_id: Getter
    event_time: Getter
    fields: Getter
    when: Getter | None
    each: str | None
    line: int | None


@dataclass(frozen=True, slots=True)
class MappedRecord:
    """One canonical record produced from a message, before validation and routing."""

    record_type: str
    record_id: str
    event_time: str | None
    record: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Mapping:
    file: str
    records: tuple[RecordRule, ...]
    input: str = "hl7"
    paths: dict[str, list[Target]] = field(default_factory=dict)  # HL7 field → what it may fill (explain)
    files: tuple[FsPath, ...] = ()  # every file read to build it (itself, includes, code tables)

    def apply(self, source: Message | dict[str, Any]) -> list[MappedRecord]:
        base = Ctx(row=source) if isinstance(source, dict) else Ctx(message=source)
        out: list[MappedRecord] = []
        for rule in self.records:
            contexts = [base] if rule.each is None else _groups(base, rule.each)
            for ctx in contexts:
                if rule.when is not None and not rule.when(ctx):
                    continue
                record_id = rule.record_id(ctx)
                if record_id in EMPTY:
                    raise MappingError(
                        mapping=self.file, line=rule.line, path="record_id", value=record_id,
                        rule=f"{rule.type} needs a record_id and the message gives none",
                    )  # fmt: skip
                event_time = rule.event_time(ctx)
                out.append(
                    MappedRecord(
                        record_type=rule.type,
                        record_id=str(record_id),
                        event_time=None if event_time in EMPTY else str(event_time),
                        record=rule.fields(ctx),
                    )
                )
        return out


def load_mapping(path: str | FsPath, display: str | None = None, roots: ConfigRoots | None = None) -> Mapping:
    """Read and compile a mapping file; raises ConfigErrors listing every problem. Includes
    and code tables are read only inside `roots` (routes.yaml's: `Settings.roots`); a mapping
    loaded on its own may read below its folder and the working directory."""
    file = display or str(path)
    if roots is None:
        roots = ConfigRoots.of([FsPath.cwd(), FsPath(path).parent])
    try:
        text = _read_utf8(FsPath(path), file)
    except OSError as exc:
        problem = ConfigError(file, None, f"cannot read mapping file: {exc.strerror}")
        raise ConfigErrors([problem]) from exc
    except ConfigError as exc:
        raise ConfigErrors([exc]) from None
    data, lines = load_yaml(text, file)
    return _Compiler(file, FsPath(path), lines, roots).mapping(data)


def _read_utf8(path: FsPath, file: str) -> str:
    """A mapping file's text; bytes that are not UTF-8 (a file saved as GBK) are a ConfigError
    naming the file and offset, as routes.yaml's are, not a traceback out of `check`."""
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"not valid UTF-8 (byte offset {exc.start}); save the file as UTF-8"
        raise ConfigError(file, None, message) from None


def compile_message_condition(text: str) -> Callable[[Ctx], bool]:
    """A `when:` of routes.yaml, evaluated on the whole message."""
    return _generate(compile_condition(text, _path_getter), "condition", f"when {text}")


def condition_inputs(text: str, message: Message) -> dict[str, Any]:
    """The value each path of a routes.yaml `when:` reads from a message, so `mapping run`
    can say why a condition failed."""
    paths: list[str] = []

    def resolve(path: str) -> Getter:
        paths.append(path)
        return _path_getter(path)

    compile_condition(text, resolve)
    ctx = Ctx(message=message)
    return {path: _path_getter(path)(ctx) for path in dict.fromkeys(paths)}


def _generate(getter: Getter, name: str, origin: str) -> Getter:
    """The rule as one generated function (transforms/mapping/codegen.py)."""
    return codegen.generate(getter, name, origin, _segment_for)


def mapping_source(mapping: Mapping) -> str:
    """The Python source a mapping's rules became: what runs for each message."""
    out = []
    for rule in mapping.records:
        out.append(f"# {rule.type} (line {rule.line})")
        for getter in (rule.when, rule.record_id, rule.event_time, rule.fields):
            if getter is not None:
                out.append(codegen.source_of(getter) or f"# {getter!r} (a closure)")
    return "\n".join(out)


class _Compiler(ValueRules):
    def __init__(self, file: str, path: FsPath, lines: LineMap, roots: ConfigRoots) -> None:
        self.file = file
        self.path = path
        self.lines = lines
        self.roots = roots
        self.errors: list[ConfigError] = []
        self.input = "hl7"
        self.paths: dict[str, list[Target]] = {}
        self.target: list[str] = []  # output field being compiled, for explain
        self.conditions: list[str] = []  # `when:` / `where` around the rule being compiled
        self.lookup: tuple[str, frozenset[str]] | None = None  # code table around it
        self.tables: dict[FsPath, CodeTable | None] = {}
        self.files: list[FsPath] = [path]

    # -- structure --------------------------------------------------------------------

    def mapping(self, data: Any) -> Mapping:
        if not isinstance(data, dict) or not isinstance(data.get("records"), list):
            raise ConfigErrors([ConfigError(self.file, 1, "a mapping file needs a 'records:' list")])
        for key in sorted(set(data) - FILE_KEYS):
            self.error((key,), f"unknown key '{key}' (expected one of {sorted(FILE_KEYS)})")
        self.input = str(data.get("input", "hl7"))
        if self.input not in ("hl7", "row"):
            self.error(("input",), f"input must be hl7 or row, not {self.input!r}")
        rules = [self.compiled_record(r, ("records", i)) for i, r in enumerate(data["records"])]
        if self.errors:
            raise ConfigErrors(self.errors)
        files = tuple(dict.fromkeys(self.files))
        return Mapping(self.file, tuple(r for r in rules if r is not None), self.input, self.paths, files)

    def compiled_record(self, spec: Any, loc: tuple[Any, ...]) -> RecordRule | None:
        """`record`, with any failure the checks above did not foresee (a rule shape the
        compiler or the code generator cannot handle) reported at the record's line, as
        `check` reports every other problem, never as a traceback."""
        saved = (self.file, self.path, self.lines)
        try:
            return self.record(spec, loc)
        except (ConfigError, ConfigErrors) as exc:
            self.errors += exc.errors if isinstance(exc, ConfigErrors) else [exc]
        except Exception as exc:
            self.file, self.path, self.lines = saved  # an included file may have been current
            self.error(loc, f"cannot compile this record: {type(exc).__name__}: {exc}")
        return None

    def error(self, loc: tuple[Any, ...], message: str) -> None:
        self.errors.append(ConfigError(self.file, self.lines.line_of(loc), message))

    def record(self, spec: Any, loc: tuple[Any, ...]) -> RecordRule | None:
        if not isinstance(spec, dict):
            self.error(loc, "each record must be a mapping with type, record_id and fields")
            return None
        for key in sorted(set(spec) - RECORD_KEYS):
            self.error((*loc, key), f"unknown key '{key}' in a record (expected {sorted(RECORD_KEYS)})")
        for key in ("type", "record_id", "fields"):
            if key not in spec:
                self.error(loc, f"record is missing '{key}'")
        if not isinstance(spec.get("fields", {}), dict):
            self.error((*loc, "fields"), "'fields' must be a mapping of field name to rule")
            return None
        default_time = {"path": "MSH-7", "convert": "hl7_datetime"} if self.input == "hl7" else None
        event_spec = spec.get("event_time", default_time)
        kind = str(spec.get("type", "?"))
        self.conditions = [str(spec["when"])] if "when" in spec else []  # the record's own
        self.target = [kind, "record_id"]
        record_id = self.value(spec.get("record_id"), (*loc, "record_id"))
        self.target = [kind, "event_time"]
        event_time = self.value(event_spec, (*loc, "event_time"))
        self.target = [kind]
        line = self.lines.line_of(loc)
        where = f"{self.file}:{line} {kind}"
        fields = self.obj(spec.get("fields", {}), (*loc, "fields"))
        self.conditions = []
        when = self.condition(spec["when"], (*loc, "when")) if "when" in spec else None
        return RecordRule(
            type=str(spec.get("type", "")),
            record_id=_generate(record_id, "record_id", where),
            event_time=_generate(event_time, "event_time", where),
            fields=_generate(fields, "fields", where),
            when=None if when is None else _generate(when, "when", where),
            each=self.each_segment(spec["each"], (*loc, "each")) if "each" in spec else None,
            line=line,
        )

    def obj(self, fields: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        getters: dict[str, Getter] = {}
        for name, spec in fields.items():
            self.target.append(str(name))
            getters[name] = self.value(spec, (*loc, name))
            self.target.pop()

        pairs = tuple(getters.items())

        def build(ctx: Ctx) -> dict[str, Any]:
            return {name: get(ctx) for name, get in pairs}

        return attach(build, codegen.Obj(pairs))

    # -- values -----------------------------------------------------------------------

    def value(self, spec: Any, loc: tuple[Any, ...]) -> Getter:
        if spec is None:
            return _const(None)
        if isinstance(spec, str):
            return self.text_getter(spec, loc)
        if isinstance(spec, bool) or not isinstance(spec, dict):
            if isinstance(spec, int | float) and not isinstance(spec, bool):
                hint = "quote relative paths ('.1'); use const: for constants"
                self.error(loc, f"{spec!r} is a number, not a rule: {hint}")
                return lambda ctx: None
            return _const(spec)
        if spec and not set(spec) & SPEC_KEYS:
            return self.obj(spec, loc)  # a plain mapping of names to rules: a nested object
        if "include" in spec:
            for key in sorted(set(spec) - {"include"}):
                self.error((*loc, key), f"'{key}' beside 'include': an included rule stands alone")
            return self.include(str(spec["include"]), loc)
        for key in sorted(set(spec) - SPEC_KEYS):
            self.error(
                (*loc, key),
                f"unknown key '{key}' in a field rule (expected one of {sorted(SPEC_KEYS)})",
            )
        conditions, lookup = list(self.conditions), self.lookup
        self.conditions += [str(spec[k]) for k in ("when", "where") if k in spec]
        if "table" in spec:
            self.lookup = self.table_lookup(spec, loc)
        try:
            base = self.base(spec, loc)
        finally:
            self.conditions, self.lookup = conditions, lookup
        return self.finish(base, spec, loc)

    def table_lookup(self, spec: dict[str, Any], loc: tuple[Any, ...]) -> tuple[str, frozenset[str]] | None:
        """The table's name and the codes it gives a result for (explain says no more)."""
        table = self.table(spec, loc)
        if table is None:
            return None
        results = _table_results(table, str(spec.get("table_column", "")) or None)
        return str(spec["table"]), frozenset(code for code, found in results.items() if found is not None)

    def base(self, spec: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        """The rule's raw value, before converters, defaults and checks."""
        if "take" in spec:
            return self.take(spec, loc)
        if "each" in spec:
            return self.each(spec, loc)
        if "fields" in spec:
            return self.obj(spec["fields"], (*loc, "fields"))
        if "const" in spec:
            return _const(spec["const"])
        if "template" in spec:
            return self.template_getter(str(spec["template"]), (*loc, "template"))
        if "first" in spec:
            options = spec["first"] if isinstance(spec["first"], list) else [spec["first"]]
            getters = [self.value(p, (*loc, "first", i)) for i, p in enumerate(options)]

            def first(ctx: Ctx) -> Any:
                for g in getters:
                    v = g(ctx)
                    if v or not (v is None or v == "" or v == []):  # `v not in EMPTY`, sooner
                        return v
                return None

            return attach(first, codegen.First(getters))
        if "quantity" in spec:
            return self.quantity(spec, loc)
        if "derive" in spec:
            return self.derive(spec, loc)
        if "column" in spec:
            return _column_getter(str(spec["column"]))
        if "obx" in spec:
            return self.obx(spec, loc)
        if "path" in spec:
            if "type_from" in spec:
                return self.typed(str(spec["path"]), str(spec["type_from"]), loc)
            return self.path_getter(str(spec["path"]), (*loc, "path"))
        self.error(
            loc,
            "a field rule needs one of path, column, first, template, const, fields, each, "
            "quantity or derive",
        )
        return lambda ctx: None

    def finish(self, base: Getter, spec: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        """Converter, code table, join, default, required and when around a base value."""
        line = self.lines.line_of(loc)
        file = self.file
        first = spec.get("first")
        first_label = " | ".join(map(str, first)) if isinstance(first, list) else first
        label = str(
            spec.get("path")
            or spec.get("column")
            or spec.get("template")
            or first_label
            or (loc[-1] if loc else "value")
        )
        convert = spec.get("convert")
        fn = None
        if convert is not None:
            fn = CONVERTERS.get(str(convert))
            if fn is None:
                known = ", ".join(sorted(CONVERTERS))
                self.error((*loc, "convert"), f"unknown converter '{convert}' (known: {known})")
        table = self.table(spec, loc) if "table" in spec else None
        column = str(spec.get("table_column", "")) or None
        join = spec.get("join")
        default = spec.get("default")
        required = bool(spec.get("required", False))
        when = self.condition(spec["when"], (*loc, "when")) if "when" in spec else None
        nothing: Any = [] if "each" in spec and join is None and "take" not in spec else None

        # A table's rows as the rule's results, worked out once: a lookup is then one get.
        results = _table_results(table, column) if table is not None else None

        def one(value: Any) -> Any:
            if not value and (value is None or value == "" or value == []):
                return None
            if fn is not None:
                value = fn(value)
            if results is not None:
                found = results.get(str(value).strip())
                value = dict(found) if type(found) is dict else found  # a fresh dict per record
            return value

        node = codegen.Finish(
            base, one, fn=fn, results=results, convert=convert, join=join, default=default,
            required=required, when=when, nothing=nothing, file=file, line=line, label=label,
        )  # fmt: skip

        def run(ctx: Ctx) -> Any:
            if when is not None and not when(ctx):
                return None
            value = base(ctx)
            try:
                if isinstance(value, list):
                    value = [one(v) for v in value]
                elif value is None or value == "":
                    value = None
                else:  # `one(value)` for a single value, without the call
                    if fn is not None:
                        value = fn(value)
                    if results is not None:
                        found = results.get(str(value).strip())
                        value = dict(found) if type(found) is dict else found
            except ValueError as exc:
                raise MappingError(
                    mapping=file, line=line, path=label, value=value, rule=f"{convert}: {exc}"
                ) from None
            if join is not None and isinstance(value, list):
                value = str(join).join(str(v) for v in value if v not in EMPTY) or None
            if not value and (value is None or value == "" or value == []):
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
                return nothing
            return value

        if table is None and join is None and default is None and not required and when is None:
            # Most rules are a path with at most a converter: the same steps, fewer tests.
            if fn is None:

                def plain(ctx: Ctx) -> Any:
                    value = base(ctx)
                    if isinstance(value, list):
                        value = [None if not v and (v is None or v == "" or v == []) else v for v in value]
                    if not value and (value is None or value == "" or value == []):
                        return nothing
                    return value

                return attach(plain, node)

            def convert_only(ctx: Ctx) -> Any:
                value = base(ctx)
                try:
                    if isinstance(value, list):
                        value = [one(v) for v in value]
                    elif value is None or value == "":
                        return nothing
                    else:
                        value = fn(value)
                except ValueError as exc:
                    raise MappingError(
                        mapping=file, line=line, path=label, value=value, rule=f"{convert}: {exc}"
                    ) from None
                if not value and (value is None or value == "" or value == []):
                    return nothing
                return value

            return attach(convert_only, node)
        return attach(run, node)

    def include(self, reference: str, loc: tuple[Any, ...]) -> Getter:
        """A rule kept in its own file (`include: ../common/observations.yaml`), shared by
        several mappings; its errors name that file and line."""
        path = (self.path.parent / reference).resolve()
        refusal = self.roots.refusal("included file", reference, path)
        if refusal is not None:
            self.error(loc, refusal)
            return lambda ctx: None
        self.files.append(path)
        try:
            data, lines = load_yaml(_read_utf8(path, reference), reference)
        except OSError as exc:
            self.error(loc, f"cannot read included file {reference}: {exc.strerror}")
            return lambda ctx: None
        except (ConfigError, ConfigErrors) as exc:
            self.errors += exc.errors if isinstance(exc, ConfigErrors) else [exc]
            return lambda ctx: None
        saved = (self.file, self.path, self.lines)
        self.file, self.path, self.lines = reference, path, lines
        try:
            return self.value(data, ("include",))
        finally:
            self.file, self.path, self.lines = saved

    def each(self, spec: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        """`each: OBX` (segment groups) or `each: PID-3[*]` (repetitions), optionally
        filtered by `where:` and producing `fields:` objects or one `value:` each."""
        expr = str(spec["each"])
        inner = (
            self.obj(spec.get("fields") or {}, (*loc, "fields"))
            if "fields" in spec or "value" not in spec
            else self.value(spec["value"], (*loc, "value"))
        )
        where = self.condition(spec["where"], (*loc, "where")) if "where" in spec else None
        if "-" not in expr:
            name = self.each_segment(expr, (*loc, "each"))

            def per_segment(ctx: Ctx) -> list[Any]:
                groups = _groups(ctx, name) if name else []
                return [inner(g) for g in groups if where is None or where(g)]

            origin = f"{self.file}:{self.lines.line_of(loc)} each {name}"
            node = codegen.EachGroup(
                name,
                _generate(inner, f"each_{name}", origin),
                None if where is None else _generate(where, "where", origin),
                _groups,
            )
            return attach(per_segment, node)
        try:
            path = parse_path(expr)
        except ValueError as exc:
            self.error((*loc, "each"), f"bad 'each' path '{expr}': {exc}")
            return lambda ctx: []

        def per_repetition(ctx: Ctx) -> list[Any]:
            seg = _segment_for(ctx, path.segment, path.occurrence)
            if seg is None:
                return []
            items = [
                Ctx(ctx.message, ctx.row, ctx.scope, seg, rep) for rep in seg.repetitions(path.field) if rep
            ]
            return [inner(c) for c in items if where is None or where(c)]

        return per_repetition

    def take(self, spec: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        """`take: first` on an `each:` gives its first item, not a list: the mother is the
        first NK1 whose relationship is MTH, whichever NK1 she is."""
        if spec["take"] != "first" or "each" not in spec:
            self.error((*loc, "take"), "'take' goes with 'each' and can only be 'first'")
            return lambda ctx: None
        items = self.each(spec, loc)

        def first_item(ctx: Ctx) -> Any:
            found = items(ctx)
            return found[0] if found else None

        return first_item

    def each_segment(self, expr: Any, loc: tuple[Any, ...]) -> str:
        name = str(expr).split("[")[0].strip()
        if not SEGMENT_NAME.fullmatch(name):
            self.error(
                loc,
                f"'each' names a segment (e.g. OBX) or a repeating field (e.g. PID-3[*]), not {expr!r}",
            )
            return ""
        return name

    def condition(self, text: Any, loc: tuple[Any, ...]) -> Getter:
        target, self.target = self.target, []  # a condition reads a field, it does not fill one
        try:
            return compile_condition(str(text), lambda p: self.path_getter(p, loc, strict=True))
        except ConditionError as exc:
            self.error(loc, f"bad condition: {exc}")
            return lambda ctx: False
        finally:
            self.target = target
