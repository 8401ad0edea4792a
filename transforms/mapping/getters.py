"""What a compiled mapping rule does on one message: the evaluation context (`Ctx`: the
message or row, the segment group in scope), segment groups for `each:`, and the getters
for HL7 paths, `where` selections, relative paths, columns and code table results. The
compiler (compiler.py) builds rules from these; codegen.py turns them into Python."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from transforms.hl7v2 import HL7_NULL, Message, Segment, parse_path, unescape
from transforms.mapping import codegen
from transforms.mapping.codegen import attach
from transforms.mapping.codetables import CodeTable

_WHERE = re.compile(r"^(?P<value>\S+)\s+where\s+(?P<cond>\S+)\s*(?P<op>==|!=)\s*(?P<lit>.+)$")
_TEMPLATE_PART = re.compile(r"\{([^{}]+)\}")
_RELATIVE = re.compile(r"^\.(\d+)(?:\.(\d+))?$")

EMPTY = (None, "", [])
"""Values that count as no value: a rule that finds one gives None."""

# Segments that belong to the segment before them (a note after an OBX is that OBX's note).
_TRAILING = frozenset({"NTE"})


@dataclass(slots=True)
class Ctx:
    """Where a rule is evaluated: the message or row, the segment group in scope (from
    message position `base`), and the segment or repetition being iterated."""

    message: Message | None = None
    row: dict[str, Any] | None = None
    scope: Sequence[Segment] | None = None
    segment: Segment | None = None
    repetition: str | None = None
    base: int = 0

    def segments(self, name: str) -> list[Segment]:
        """Segments of this name in the group in scope, else the nearest one before the
        group (so inside `each: OBX`, `OBR-4` reads this OBX's own OBR and `PID-5` the
        patient); never a note or Z-segment of another group."""
        if self.scope is None:
            return self.message.segments(name) if self.message else []
        found = [s for s in self.scope if s.name == name]
        if found or name in _TRAILING or name.startswith("Z") or self.message is None:
            return found
        before = self.message.segments()[: self.base]
        for seg in reversed(before):
            if seg.name == name:
                return [seg]
        return []


Getter = Callable[[Ctx], Any]


def _groups(ctx: Ctx, name: str) -> list[Ctx]:
    """One context per `name` segment. Its scope runs to the next `name` segment or to the
    next segment of a kind that came before the first one (an OBR ends the last OBX group
    of the previous order), so `each: OBR` sees that OBR's OBX and NTE, and `each: OBX`
    the NTE after each OBX."""
    if ctx.scope is not None:
        pool, base = list(ctx.scope), ctx.base
    else:
        pool, base = (ctx.message.segments() if ctx.message else []), 0
    starts = [i for i, s in enumerate(pool) if s.name == name]
    if not starts:
        return []
    boundary = {s.name for s in pool[: starts[0]]} - _TRAILING - {name}
    out = []
    for start in starts:
        end = start + 1
        while end < len(pool) and pool[end].name != name and pool[end].name not in boundary:
            end += 1
        out.append(Ctx(ctx.message, ctx.row, pool[start:end], pool[start], None, base + start))
    return out


def _segment_for(ctx: Ctx, name: str, occurrence: int | None) -> Segment | None:
    if ctx.segment is not None and ctx.segment.name == name:
        return ctx.segment
    if ctx.scope is None and ctx.message is not None:
        return ctx.message.segment(name, occurrence or 1)  # the same as segments(name)[i]
    found = ctx.segments(name)
    index = (occurrence or 1) - 1
    return found[index] if index < len(found) else None


def _coded_row(row: dict[str, str]) -> dict[str, str] | None:
    """A code-table row as a coded value, or nothing when the row has no standard code."""
    if not row.get("code"):
        return None
    return {k: row[k] for k in ("code", "system", "display") if row.get(k)}


def _clean(value: Any) -> Any:
    return None if value is HL7_NULL else value


def _table_results(table: CodeTable, column: str | None) -> dict[str, Any]:
    """What a lookup of each local code gives: the column's text, or the row as a coded
    value (None for a row without a standard code); codes not in the table give None."""
    if column:
        return {code: row.get(column) or None for code, row in table.rows.items()}
    return {code: _coded_row(row) for code, row in table.rows.items()}


def _column_getter(name: str) -> Getter:
    def get(ctx: Ctx) -> Any:
        if ctx.row is None:
            return None
        value = ctx.row.get(name)
        return value.strip() if isinstance(value, str) else value

    return get


def _path_getter(expr: str) -> Getter:
    path = parse_path(expr)
    name, occurrence, field_no = path.segment, path.occurrence, path.field
    rep, comp, sub = path.repetition, path.component, path.subcomponent
    if occurrence is None:

        def every_segment(ctx: Ctx) -> list[Any]:
            out: list[Any] = []
            for seg in ctx.segments(name):
                reps = range(1, len(seg.repetitions(field_no)) + 1) if rep is None else (rep,)
                out += [_clean(seg.value(field_no, r, comp, sub)) for r in reps]
            return out

        return every_segment
    if rep is None:

        def every_repetition(ctx: Ctx) -> list[Any]:
            seg = _segment_for(ctx, name, occurrence)
            if seg is None:
                return []
            reps = range(1, len(seg.repetitions(field_no)) + 1)
            return [_clean(seg.value(field_no, r, comp, sub)) for r in reps]

        return every_repetition

    def one(ctx: Ctx) -> Any:
        seg = ctx.segment
        if seg is None or seg.name != name:
            seg = _segment_for(ctx, name, occurrence)
            if seg is None:
                return None
        value = seg.value(field_no, rep, comp, sub)
        return None if value is HL7_NULL else value

    return attach(one, codegen.PathOne(name, occurrence, field_no, rep, comp, sub))


def _const(value: Any) -> Getter:
    return attach(lambda ctx: value, codegen.Const(value))


def _where_getter(value_expr: str, cond_expr: str, op: str, literal: str) -> Getter:
    vpath, cpath = parse_path(value_expr), parse_path(cond_expr)
    if vpath.segment != cpath.segment or vpath.field != cpath.field:
        example = "PID-3[*].1 where PID-3[*].5 == ID"
        raise ValueError(f"the value and the condition must be on the same field (e.g. {example})")
    want_equal = op == "=="

    name, occurrence = vpath.segment, vpath.occurrence
    field_no, vcomp, vsub = vpath.field, vpath.component, vpath.subcomponent
    ccomp, csub = cpath.component, cpath.subcomponent

    def select(ctx: Ctx) -> Any:
        seg = _segment_for(ctx, name, occurrence)
        if seg is None:
            return None
        for r in range(1, len(seg.repetitions(field_no)) + 1):
            got = _clean(seg.value(field_no, r, ccomp, csub)) or ""
            if (got == literal) == want_equal:
                return _clean(seg.value(field_no, r, vcomp, vsub))
        return None

    return select


def _relative_getter(expr: str) -> Getter:
    m = _RELATIVE.match(expr)
    if not m:
        raise ValueError("a relative path is .COMPONENT or .COMPONENT.SUBCOMPONENT, e.g. .1 or .4.1")
    comp, sub = int(m.group(1)), int(m.group(2)) if m.group(2) else None

    def component(ctx: Ctx) -> Any:
        if ctx.repetition is None or ctx.message is None:
            return None
        d = ctx.message.delimiters
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
