"""The rules that read one value: HL7 paths and templates, typed OBX values, code tables,
quantities with units and derived values, and the explain notes each leaves. A mixin of
the mapping compiler (compiler.py), which owns the structure of a file: records, fields,
`each:`, `first:`, includes and conditions."""

from __future__ import annotations

from pathlib import Path as FsPath
from typing import Any

from core.config_paths import ConfigRoots
from core.errors import ConfigError, MappingError
from core.yaml_lines import LineMap
from transforms.converters import typed_value
from transforms.hl7v2 import parse_path
from transforms.mapping import codegen
from transforms.mapping.codegen import attach
from transforms.mapping.codetables import CodeTable, find_table, load_code_table
from transforms.mapping.functions import FUNCTIONS
from transforms.mapping.getters import (
    _TEMPLATE_PART,
    _WHERE,
    EMPTY,
    Ctx,
    Getter,
    _clean,
    _column_getter,
    _literal,
    _path_getter,
    _relative_getter,
    _segment_for,
    _where_getter,
)
from transforms.mapping.targets import Target
from transforms.mapping.units import convert_quantity


class ValueRules:
    """What the compiler provides these rules (set in `_Compiler.__init__`)."""

    file: str
    lines: LineMap
    roots: ConfigRoots
    errors: list[ConfigError]
    input: str
    paths: dict[str, list[Target]]
    target: list[str]
    conditions: list[str]
    lookup: tuple[str, frozenset[str]] | None
    tables: dict[FsPath, CodeTable | None]
    files: list[FsPath]

    def error(self, loc: tuple[Any, ...], message: str) -> None:
        raise NotImplementedError

    def value(self, spec: Any, loc: tuple[Any, ...]) -> Getter:
        raise NotImplementedError

    def table(self, spec: dict[str, Any], loc: tuple[Any, ...]) -> Any:
        """The code table a rule names, read once per compile (a refusal is reported once)."""
        path = find_table(str(spec["table"]), self.path)
        if path not in self.tables:
            self.tables[path] = self.read_table(path, str(spec["table"]), loc)
        return self.tables[path]

    def read_table(self, path: FsPath, name: str, loc: tuple[Any, ...]) -> CodeTable | None:
        refusal = self.roots.refusal("code table", name, path)
        if refusal is not None:
            self.error((*loc, "table"), refusal)
            return None
        self.files.append(path)
        try:
            return load_code_table(path, display=name)
        except ConfigError as exc:
            self.errors.append(ConfigError(exc.file, exc.line, exc.message))
            return None

    def quantity(self, spec: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        q = spec["quantity"]
        if not isinstance(q, dict) or "value" not in q:
            self.error((*loc, "quantity"), "quantity needs {value: PATH, unit: PATH or unit text}")
            return lambda ctx: None
        value = self.value(q["value"], (*loc, "quantity", "value"))
        unit = self.value(q.get("unit"), (*loc, "quantity", "unit")) if "unit" in q else (lambda ctx: None)
        fixed_unit = q.get("fixed_unit")
        to_unit = spec.get("to_unit")
        file, line = self.file, self.lines.line_of(loc)

        def get(ctx: Ctx) -> Any:
            raw = value(ctx)
            if raw in EMPTY:
                return None
            got_unit = fixed_unit or unit(ctx) or ""
            try:
                return convert_quantity(raw, str(got_unit), to_unit)
            except ValueError as exc:
                raise MappingError(
                    mapping=file,
                    line=line,
                    path=str(q["value"]),
                    value=f"{raw} {got_unit}",
                    rule=str(exc),
                ) from None

        return get

    def derive(self, spec: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        name = str(spec["derive"])
        fn = FUNCTIONS.get(name)
        if fn is None:
            self.error(
                (*loc, "derive"),
                f"unknown derived value '{name}' (known: {', '.join(sorted(FUNCTIONS))})",
            )
            return lambda ctx: None
        args_spec = spec.get("args") or {}
        if not isinstance(args_spec, dict):
            self.error((*loc, "args"), "args must map argument names to rules")
            return lambda ctx: None
        odd = [k for k in args_spec if not isinstance(k, str)]
        if odd:
            self.error((*loc, "args"), f"argument names must be text; YAML read {odd} (quote on/yes/no)")
            return lambda ctx: None
        args = {k: self.value(v, (*loc, "args", k)) for k, v in args_spec.items()}
        file, line = self.file, self.lines.line_of(loc)

        def get(ctx: Ctx) -> Any:
            values = {k: g(ctx) for k, g in args.items()}
            try:
                return fn(**values)
            except (ValueError, TypeError) as exc:
                raise MappingError(mapping=file, line=line, path=name, value=values, rule=str(exc)) from None

        return get

    def obx(self, spec: dict[str, Any], loc: tuple[Any, ...]) -> Getter:
        """`{obx: MCH0202}`: the value of the observation whose OBX-3.1 is that code (or one
        of a list), typed by its OBX-2; `obx_field: 6` reads another field of it (decoded)."""
        codes = spec["obx"] if isinstance(spec["obx"], list) else [spec["obx"]]
        wanted = {str(c) for c in codes}
        field_no = spec.get("obx_field")
        if field_no is not None and not (isinstance(field_no, int) and field_no > 0):
            self.error((*loc, "obx_field"), "obx_field is a field number, e.g. 6 for the unit")
            field_no = None
        for code in sorted(wanted):
            self.note(f"OBX-{field_no or 5}", obx_code=code)

        def get(ctx: Ctx) -> Any:
            for seg in ctx.segments("OBX"):
                if seg.get(3, 1, 1) not in wanted:
                    continue
                if field_no is not None:
                    return _clean(seg.get(field_no, 1, 1 if field_no in (3, 6) else None))
                kind = str(seg.get(2) or "")
                values = [typed_value(rep, kind, ctx.message.delimiters) for rep in seg.repetitions(5)]  # type: ignore[union-attr]
                values = [v for v in values if v not in EMPTY]
                return None if not values else values[0] if len(values) == 1 else values
            return None

        return get

    def typed(self, expr: str, type_expr: str, loc: tuple[Any, ...]) -> Getter:
        """An OBX-5 style value typed by OBX-2: NM → number, CE/CWE → coded, DT/TS → dates."""
        try:
            path = parse_path(expr)
            type_getter = self.path_getter(type_expr, (*loc, "type_from"), strict=True)
        except ValueError as exc:
            self.error(loc, f"bad HL7 path '{expr}': {exc}")
            return lambda ctx: None
        self.note(expr)

        name, occurrence, field_no = path.segment, path.occurrence, path.field

        def get(ctx: Ctx) -> Any:
            seg = _segment_for(ctx, name, occurrence)  # the current segment when it is `name`
            if seg is None:
                return None
            kind = str(type_getter(ctx) or "")
            delimiters = ctx.message.delimiters  # type: ignore[union-attr]
            reps = seg.repetitions(field_no)
            if len(reps) == 1:  # the usual OBX-5: one value
                value = typed_value(reps[0], kind, delimiters)
                return None if value in EMPTY else value
            values = [typed_value(rep, kind, delimiters) for rep in reps]
            values = [v for v in values if v not in EMPTY]
            if not values:
                return None
            return values[0] if len(values) == 1 else values

        return attach(get, codegen.Typed(name, occurrence, field_no, type_getter))

    # -- paths ------------------------------------------------------------------------

    def text_getter(self, text: str, loc: tuple[Any, ...]) -> Getter:
        """A bare string is a path (a column name for row input), or a template with {braces}."""
        if "{" in text:
            return self.template_getter(text, loc)
        return self.path_getter(text, loc)

    def template_getter(self, template: str, loc: tuple[Any, ...]) -> Getter:
        parts: list[str | Getter] = []
        pos = 0
        for m in _TEMPLATE_PART.finditer(template):
            parts.append(template[pos : m.start()])
            parts.append(self.path_getter(m.group(1).strip(), loc))
            pos = m.end()
        parts.append(template[pos:])

        def render(ctx: Ctx) -> str | None:
            out = []
            for part in parts:
                if isinstance(part, str):
                    out.append(part)
                    continue
                value = part(ctx)
                if value in EMPTY:
                    return None  # an id with a hole in it is no id
                out.append(str(value))
            return "".join(out)

        return attach(render, codegen.Template(parts))

    def path_getter(self, expr: str, loc: tuple[Any, ...], strict: bool = False) -> Getter:
        expr = expr.strip()
        if self.input == "row":
            return _column_getter(expr)
        m = _WHERE.match(expr)
        try:
            if m:
                self.note(m.group("value"), f"{m.group('cond')} {m.group('op')} {m.group('lit').strip()}")
                return _where_getter(
                    m.group("value"), m.group("cond"), m.group("op"), _literal(m.group("lit"))
                )
            if expr.startswith("."):
                return _relative_getter(expr)
            getter = _path_getter(expr)
            self.note(expr)
            return getter
        except ValueError as exc:
            if strict:
                raise
            self.error(
                loc, str(exc) if str(exc).startswith("bad HL7 path") else f"bad HL7 path '{expr}': {exc}"
            )
            return lambda ctx: None

    def note(self, expr: str, *conditions: str, obx_code: str | None = None) -> None:
        """Remember which output field reads which HL7 field, and on what terms (explain)."""
        if not self.target:
            return
        try:
            p = parse_path(expr)
        except ValueError:
            return
        table, codes = self.lookup or (None, None)
        where = (*self.conditions, *conditions)
        target = Target(".".join(self.target), expr, where, table, codes, obx_code)
        found = self.paths.setdefault(f"{p.segment}-{p.field}", [])
        if target not in found:
            found.append(target)
