"""Mapping rules written out as Python source: one function per object of fields.

Why: the compiler builds each rule as a closure, and a message then costs a Python call
per rule, per path read and per condition (about 30 per OBX). Here the rules that know
how to write themselves out (a `Node` attached to their closure) become the statements
of one generated function per `fields:` object, compiled once when the mapping loads;
the segments it reads are looked up once at its top. The closures stay the definition
of what a rule does: a rule without a node is called as before, and every node writes
exactly the steps of its closure, with the same errors (file, line, path, rule).

`mapping_source(mapping)` prints what a mapping became, for anyone debugging one.
"""

from __future__ import annotations

import builtins
import keyword
import linecache
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import count
from typing import Any, NamedTuple

from core.errors import MappingError
from transforms.converters import typed_value
from transforms.hl7v2 import HL7_NULL

HEADERS = frozenset(("MSH", "FHS", "BHS"))  # segments whose fields 1 and 2 are the delimiters

Getter = Callable[[Any], Any]

EMPTY = (None, "", [])
_SOURCE = "__source__"
_files = count(1)


def attach(getter: Getter, node: Node) -> Getter:
    """Give a rule's closure the node that writes it out as source; returns the closure."""
    getter.node = node  # type: ignore[attr-defined]
    return getter


def node_of(getter: Getter) -> Node | None:
    return getattr(getter, "node", None)


def _empty(var: str) -> str:
    """`var in EMPTY`, written out."""
    return f'({var} is None or {var} == "" or {var} == [])'


class _SegmentNames(NamedTuple):
    """The variables a generated function keeps for one segment it reads."""

    segment: str
    fields: str
    delimiters: tuple[str, str, str, str]  # component, repetition, escape, sub-component
    parts: dict[tuple[int, int] | None, str]  # (field, repetition) → its components; None → fields


# Names the generated code uses as they are: its own locals and Python's builtins.
_FIXED = frozenset({"ctx", "out", "item", "x", "exc", "g", "_", *dir(builtins), *keyword.kwlist})


class Emitter:
    """Collects the statements of one generated function and the objects they name.

    Every name in the function (its locals and the objects it refers to) comes from one
    table, `fresh`, which never hands out a name twice: two paths, rules or segments can
    never share a variable, whatever their numbers or names (`OBX-2[2].1` and `OBX[2]-2.1`
    once both became `OBX_2_2`)."""

    def __init__(self, segment_for: Callable[..., Any], name: str) -> None:
        self.segment_for = segment_for
        self.name = name
        self.names: dict[str, Any] = {"HL7_NULL": HL7_NULL, "MappingError": MappingError, "EMPTY": EMPTY}
        self.taken: set[str] = {*_FIXED, *self.names, name}
        self.body: list[str] = []
        self.segments: dict[tuple[str, int], _SegmentNames] = {}
        self.depth = 1
        self._count = count(1)

    def fresh(self, hint: str, numbered: bool = True) -> str:
        """A name no other variable or reference of this function has, shaped like `hint`."""
        base = re.sub(r"\W", "_", hint, flags=re.ASCII)
        if not base or not (base[0].isalpha() or base[0] == "_") or base == "_":
            base = "v_" + base
        glue = "_" if base[-1].isdigit() else ""  # OBX_2_2 then _8, not OBX_2_28
        name = base if not numbered and base not in self.taken else f"{base}{glue}{next(self._count)}"
        while name in self.taken:
            name = f"{base}{glue}{next(self._count)}"
        self.taken.add(name)
        return name

    def line(self, text: str) -> None:
        self.body.append("    " * self.depth + text)

    @contextmanager
    def block(self, head: str) -> Iterator[None]:
        self.line(head)
        self.depth += 1
        try:
            yield
        finally:
            self.depth -= 1

    def tmp(self, hint: str = "v") -> str:
        return self.fresh(hint)

    def ref(self, obj: Any, hint: str) -> str:
        """A name for `obj` in the function's globals (the same object, not a copy)."""
        for name, have in self.names.items():
            if have is obj:
                return name
        name = self.fresh(hint, numbered=False)
        self.names[name] = obj
        return name

    def literal(self, value: Any, hint: str) -> str:
        """Text, numbers, booleans and None as literals; anything else by reference."""
        if value is None or type(value) in (str, int, bool):
            return repr(value)
        return self.ref(value, hint)

    def _segment(self, name: str, occurrence: int | None) -> _SegmentNames:
        key = (name, occurrence or 1)  # `segment_for` reads no occurrence as the first
        found = self.segments.get(key)
        if found is None:
            hint = name if occurrence in (None, 1) else f"{name}_{occurrence}"
            delimiters = tuple(self.fresh(f"{d}_{hint}") for d in ("comp", "rep", "esc", "sub"))
            found = self.segments[key] = _SegmentNames(
                self.fresh(f"seg_{hint}"),
                self.fresh(f"fields_{hint}"),
                delimiters,
                {},  # type: ignore[arg-type]
            )
        return found

    def segment(self, name: str, occurrence: int | None) -> str:
        """The variable holding the segment `name` as a path in this context reads it."""
        return self._segment(name, occurrence).segment

    def fields(self, segment: str, occurrence: int | None) -> tuple[str, tuple[str, str, str, str]]:
        """The variables holding that segment's raw fields and its delimiters
        (component, repetition, escape, sub-component)."""
        names = self._segment(segment, occurrence)
        names.parts[None] = names.fields
        return names.fields, names.delimiters

    def components(self, segment: str, occurrence: int | None, field: int, rep: int) -> str:
        """The variable holding the raw components of one field repetition of that segment."""
        names = self._segment(segment, occurrence)
        names.parts[None] = names.fields
        if (field, rep) not in names.parts:
            names.parts[(field, rep)] = self.fresh(f"{segment}_{field}_{rep}")
        return names.parts[(field, rep)]

    def value(self, getter: Getter, out: str) -> None:
        """Statements that leave the rule's value in `out`."""
        node = node_of(getter)
        if node is None:
            self.line(f"{out} = {self.ref(getter, 'rule')}(ctx)")
        else:
            node.emit(self, out)

    def function(self, result: str, origin: str) -> Getter:
        find = self.ref(self.segment_for, "segment_for")
        head = [f"def {self.name}(ctx):"]
        for (seg, occ), names in self.segments.items():
            head.append(f"    {names.segment} = {find}(ctx, {seg!r}, {occ!r})")
            if not names.parts:
                continue
            comp, rep, esc, sub = names.delimiters
            head.append(f"    if {names.segment} is not None:")
            head.append(f"        {names.fields} = {names.segment}.raw_fields()")
            head.append(f"        _, {comp}, {rep}, {esc}, {sub}, _ = {names.segment}.delimiters")
            for key, part in names.parts.items():
                if key is not None:
                    head.append(f"        {part} = {names.segment}.components{key}")
            head.append("    else:")
            head.append("        " + " = ".join(names.parts.values()) + " = None")
        source = "\n".join([*head, *self.body, f"    return {result}", ""])
        filename = f"<mapping {origin} #{next(_files)}>"
        namespace = dict(self.names)
        exec(compile(source, filename, "exec"), namespace)  # the source was built above from the rules
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        fn = namespace[self.name]
        setattr(fn, _SOURCE, source)
        return fn  # type: ignore[no-any-return]


def generate(getter: Getter, name: str, origin: str, segment_for: Callable[..., Any]) -> Getter:
    """The rule as one generated function, or the closure itself when it has no node."""
    node = node_of(getter)
    if node is None:
        return getter
    em = Emitter(segment_for, name)
    node.emit(em, "out")
    fn = em.function("out", origin)
    fn.closure = getter  # type: ignore[attr-defined]  # what it was generated from (tests compare)
    return attach(fn, node)


def generated_functions(getter: Getter) -> list[Getter]:
    """A generated function and those it calls (inner `each:` objects), first seen first."""
    found: list[Getter] = []
    todo = [getter]
    while todo:
        fn = todo.pop(0)
        if not hasattr(fn, _SOURCE) or fn in found:
            continue
        found.append(fn)
        todo += [v for v in fn.__globals__.values() if callable(v) and hasattr(v, _SOURCE)]  # type: ignore[attr-defined]
    return found


def source_of(getter: Getter) -> str:
    return "\n".join(getattr(fn, _SOURCE) for fn in generated_functions(getter))


# --------------------------------------------------------------------------- nodes


class Node:
    """A rule that writes itself out; `scalar` when its value is never a list."""

    scalar = True

    def emit(self, em: Emitter, out: str) -> None:
        raise NotImplementedError


class Const(Node):
    def __init__(self, value: Any) -> None:
        self.val = value
        self.scalar = not isinstance(value, list)

    def emit(self, em: Emitter, out: str) -> None:
        em.line(f"{out} = {em.literal(self.val, 'const')}")


class PathOne(Node):
    """One value at `SEG[occ]-F[rep].C.S` of the segment in scope (`_path_getter`'s `one`)."""

    def __init__(self, segment: str, occurrence: int | None, field: int, rep: int, comp: Any, sub: Any):
        self.args = (segment, occurrence, field, rep, comp, sub)

    def emit(self, em: Emitter, out: str) -> None:
        segment, occurrence, field, rep, comp, sub = self.args
        seg = em.segment(segment, occurrence)
        exact = f"{out} = {seg}.value({field}, {rep}, {comp}, {sub})"
        if sub is not None or (field in (1, 2) and segment in HEADERS) or (comp is None and rep != 1):
            em.line(f"{out} = None if {seg} is None else {seg}.value({field}, {rep}, {comp}, {sub})")
            em.line(f"if {out} is HL7_NULL:")
            em.line(f"    {out} = None")
            return
        # The raw text when it is plain (the usual case); `Segment.value` otherwise.
        fields, (comp_d, rep_d, esc_d, sub_d) = em.fields(segment, occurrence)
        if comp is None:
            em.line(
                f"{out} = {fields}[{field}] if {fields} is not None and len({fields}) > {field} else None"
            )
            special = f"{rep_d} in {out} or {comp_d} in {out} or {sub_d} in {out} or {esc_d} in {out}"
        else:
            parts = em.components(segment, occurrence, field, rep)
            em.line(
                f"{out} = {parts}[{comp - 1}] if {parts} is not None and len({parts}) > {comp - 1} else None"
            )
            special = f"{sub_d} in {out} or {esc_d} in {out}"
        em.line(f"if not {out} or {out} == '\"\"':")
        em.line(f"    {out} = None")
        with em.block(f"elif {special}:"):
            em.line(exact)
            em.line(f"if {out} is HL7_NULL:")
            em.line(f"    {out} = None")


class Obj(Node):
    """A `fields:` object: each field in order, then the dict."""

    def __init__(self, pairs: Sequence[tuple[Any, Getter]]) -> None:
        self.pairs = tuple(pairs)

    def emit(self, em: Emitter, out: str) -> None:
        items = []
        for name, getter in self.pairs:
            var = em.tmp("f_" + name if isinstance(name, str) and name.isidentifier() else "f")
            em.value(getter, var)
            items.append(f"{em.literal(name, 'key')}: {var}")
        em.line(f"{out} = {{" + ", ".join(items) + "}")


class First(Node):
    """`first:` the first option with a value."""

    def __init__(self, options: Sequence[Getter]) -> None:
        self.options = tuple(options)
        self.scalar = all((n := node_of(g)) is not None and n.scalar for g in options)

    def emit(self, em: Emitter, out: str) -> None:
        depth = em.depth
        for getter in self.options:
            em.value(getter, out)
            em.line(f"if not {out} and {_empty(out)}:")
            em.depth += 1
        em.line(f"{out} = None")
        em.depth = depth


class Template(Node):
    """`"lab:{MSH-3}:{OBR-3.1}"`: None as soon as one part is empty."""

    def __init__(self, parts: Sequence[str | Getter]) -> None:
        self.parts = tuple(parts)

    def emit(self, em: Emitter, out: str) -> None:
        depth = em.depth
        em.line(f"{out} = None")
        pieces = []
        for part in self.parts:
            if isinstance(part, str):
                pieces.append(repr(part))
                continue
            var = em.tmp("t")
            em.value(part, var)
            em.line(f"if not {_empty(var)}:")
            em.depth += 1
            pieces.append(f"str({var})")
        em.line(f"{out} = ''.join(({', '.join(pieces)},))")
        em.depth = depth


class Finish(Node):
    """Converter, code table, join, default, required and `when` around a base value
    (the compiler's `finish`); `one` is the closure's per-item step for list values."""

    def __init__(self, base: Getter, one: Getter, **parts: Any) -> None:
        self.base, self.one, self.parts = base, one, parts
        node = node_of(base)
        self.base_scalar = node is not None and node.scalar
        self.scalar = self.base_scalar or parts["join"] is not None

    def emit(self, em: Emitter, out: str) -> None:
        p = self.parts
        depth = em.depth
        if p["when"] is not None:
            cond = em.tmp("c")
            em.value(p["when"], cond)
            em.line(f"if not {cond}:")
            em.line(f"    {out} = None")
            em.line("else:")
            em.depth += 1
        em.value(self.base, out)
        fn, results = p["fn"], p["results"]
        converts = fn is not None or results is not None
        where = "mapping={}, line={}, path={}".format(
            em.literal(p["file"], "file"), em.literal(p["line"], "line"), em.literal(p["label"], "label")
        )
        if converts:
            em.line("try:")
            em.depth += 1
        if not self.base_scalar:
            em.line(f"if isinstance({out}, list):")
            if converts:
                em.line(f"    {out} = [{em.ref(self.one, 'one')}(item) for item in {out}]")
            else:  # `one` without a converter or table: empty items become None
                em.line(f"    {out} = [None if not x and {_empty('x')} else x for x in {out}]")
            em.line(f"elif {out} is None or {out} == '':")
        else:
            em.line(f"if {out} is None or {out} == '':")
        em.line(f"    {out} = None")
        if converts:
            em.line("else:")
            em.depth += 1
            if fn is not None:
                name = str(p["convert"])
                em.line(
                    f"{out} = {em.ref(fn, 'convert_' + name if name.isidentifier() else 'convert')}({out})"
                )
            if results is not None:
                found = em.tmp("found")
                em.line(f"{found} = {em.ref(results, 'table')}.get(str({out}).strip())")
                em.line(f"{out} = dict({found}) if type({found}) is dict else {found}")
            em.depth -= 2
            with em.block("except ValueError as exc:"):
                prefix = repr(f"{p['convert']}: ")  # the closure's f"{convert}: {exc}"
                em.line(f"raise MappingError({where}, value={out}, rule={prefix} + str(exc)) from None")
        if p["join"] is not None:
            with em.block(f"if isinstance({out}, list):"):
                text = em.literal(str(p["join"]), "join")
                em.line(f"{out} = {text}.join(str(x) for x in {out} if x not in EMPTY) or None")
        with em.block(f"if not {out} and {_empty(out)}:"):
            if p["default"] is not None:
                em.line(f"{out} = {em.literal(p['default'], 'default')}")
            elif p["required"]:
                em.line(f'raise MappingError({where}, value={out}, rule="required value is empty")')
            else:
                em.line(f"{out} = {em.literal(p['nothing'], 'nothing')}")
        em.depth = depth


class Typed(Node):
    """An OBX-5 style value typed by another path (OBX-2); a list when it repeats."""

    scalar = False

    def __init__(self, segment: str, occurrence: int | None, field: int, type_getter: Getter) -> None:
        self.segment, self.occurrence, self.field, self.type_getter = segment, occurrence, field, type_getter

    def emit(self, em: Emitter, out: str) -> None:
        seg = em.segment(self.segment, self.occurrence)
        kind, reps = em.tmp("kind"), em.tmp("reps")
        em.line(f"{out} = None")
        with em.block(f"if {seg} is not None:"):
            em.value(self.type_getter, kind)
            em.line(f'{kind} = str({kind} or "")')
            em.line(f"{reps} = {seg}.repetitions({self.field})")
            typed = em.ref(typed_value, "typed_value")
            with em.block(f"if len({reps}) == 1:"):
                em.line(f"{out} = {typed}({reps}[0], {kind}, ctx.message.delimiters)")
                em.line(f"if {_empty(out)}:")
                em.line(f"    {out} = None")
            with em.block("else:"):
                em.line(
                    f"{out} = {em.ref(typed_values, 'typed_values')}({reps}, {kind}, ctx.message.delimiters)"
                )


def typed_values(reps: list[str], kind: str, delimiters: Any) -> Any:
    """Several repetitions typed alike (the typed rule's rare branch)."""
    values = [typed_value(rep, kind, delimiters) for rep in reps]
    values = [v for v in values if v not in EMPTY]
    if not values:
        return None
    return values[0] if len(values) == 1 else values


class EachGroup(Node):
    """`each: OBX`: the inner object (its own generated function) per segment group."""

    scalar = False

    def __init__(self, name: str, inner: Getter, where: Getter | None, groups: Callable[..., Any]):
        self.name, self.inner, self.where, self.groups = name, inner, where, groups

    def emit(self, em: Emitter, out: str) -> None:
        if not self.name:
            em.line(f"{out} = []")
            return
        groups = em.ref(self.groups, "groups")
        inner = em.ref(self.inner, f"each_{self.name}")
        test = "" if self.where is None else f" if {em.ref(self.where, 'where')}(g)"
        em.line(f"{out} = [{inner}(g) for g in {groups}(ctx, {self.name!r}){test}]")


# --------------------------------------------------------------------------- conditions


class Both(Node):
    def __init__(self, left: Getter, right: Getter) -> None:
        self.left, self.right = left, right

    def emit(self, em: Emitter, out: str) -> None:
        em.value(self.left, out)
        with em.block(f"if {out}:"):
            em.value(self.right, out)


class Either(Node):
    def __init__(self, left: Getter, right: Getter) -> None:
        self.left, self.right = left, right

    def emit(self, em: Emitter, out: str) -> None:
        em.value(self.left, out)
        with em.block(f"if not {out}:"):
            em.value(self.right, out)


class Negation(Node):
    def __init__(self, inner: Getter) -> None:
        self.inner = inner

    def emit(self, em: Emitter, out: str) -> None:
        em.value(self.inner, out)
        em.line(f"{out} = not {out}")


class Compare(Node):
    """`PATH == LIT` / `PATH != LIT`: one text compared at once, several values through
    the condition module's `values`."""

    def __init__(self, get: Getter, literal: str, equal: bool, values: Callable[[Any], list[str]]):
        self.get, self.lit, self.equal, self.values = get, literal, equal, values

    def emit(self, em: Emitter, out: str) -> None:
        var = em.tmp("p")
        em.value(self.get, var)
        lit, values = repr(self.lit), em.ref(self.values, "values")
        if self.equal:
            em.line(f"{out} = ({var} == {lit}) if type({var}) is str and {var} else {lit} in {values}({var})")
        else:
            em.line(
                f"{out} = ({var} != {lit}) if type({var}) is str and {var} else {lit} not in {values}({var})"
            )


class Within(Node):
    """`PATH in [A, B]` and `PATH not in [A, B]`."""

    def __init__(
        self, get: Getter, options: frozenset[str], negate: bool, values: Callable[[Any], list[str]]
    ):
        self.get, self.options, self.negate, self.values = get, options, negate, values

    def emit(self, em: Emitter, out: str) -> None:
        var = em.tmp("p")
        em.value(self.get, var)
        options, values = em.ref(self.options, "options"), em.ref(self.values, "values")
        if self.negate:
            em.line(f"{out} = {options}.isdisjoint({values}({var}))")
        else:
            em.line(f"{out} = not {options}.isdisjoint({values}({var}))")


class Present(Node):
    """A bare PATH: true when it gives some value that is not empty text."""

    def __init__(self, get: Getter) -> None:
        self.get = get

    def emit(self, em: Emitter, out: str) -> None:
        var = em.tmp("p")
        em.value(self.get, var)
        em.line(
            f'{out} = any(x is not None and x != "" for x in {var}) if isinstance({var}, list) '
            f'else ({var} is not None and {var} != "")'
        )
