"""Generated mapping code gives what the rule closures give, for any rules on any message.

test_generated_rules.py holds the shipped mappings to this on real messages; here hypothesis
writes the mappings too: random sets of paths (segment occurrences, repetitions, components,
sub-components, `[*]`) in random rule shapes (templates, `first`, `where`, `each` over segments
and repetitions with `where`, `when` conditions, converters, defaults, `required`, typed OBX
values, nested objects), applied to random messages built from the segments the paths name,
with delimiters, escapes and HL7 nulls in their values. Values and errors must be equal.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from transforms.hl7v2 import Message
from transforms.mapping.compiler import Mapping, load_mapping
from transforms.mapping.getters import Ctx, _groups

SEGMENTS = ("PID", "OBR", "OBX", "NTE", "ZX1")
LITERALS = ("a", "B", "1", "ID", "PI")
ATOMS = ("", "a", "B", "1", "ID", "PI", '""', "\\S\\", "x\\T\\y", "\\E\\", "20240321", "3.5", "张三")
# Field names that are also names inside generated code.
NAMES = ("a", "b", "c", "out", "ctx", "seg_OBX", "OBX_2_2", "fields_PID", "rule", "str", "each_OBX")

# --------------------------------------------------------------------------- messages


def _join(parts: st.SearchStrategy[str], sep: str, most: int) -> st.SearchStrategy[str]:
    return st.lists(parts, min_size=1, max_size=most).map(sep.join)


FIELD = _join(_join(_join(st.sampled_from(ATOMS), "&", 2), "^", 4), "~", 3)
MSH = st.tuples(FIELD, FIELD).map(
    lambda f: f"MSH|^~\\&|{f[0]}|FY01|MCH|FY01|20240321083215||ORU^R01|{f[1]}|P|2.5"
)

# --------------------------------------------------------------------------- paths

NUMBER = st.sampled_from(["", "[1]", "[2]", "[3]", "[*]"])
COMPONENT = st.sampled_from(["", ".1", ".2", ".3", ".1.1", ".2.2", ".1.2"])
PART = st.tuples(st.sampled_from((*SEGMENTS, "MSH")), NUMBER, st.integers(1, 4), NUMBER, COMPONENT)


@st.composite
def path_sets(draw: st.DrawFn) -> list[str]:
    """A few paths, some with twins whose numbers moved between segment, field and
    repetition (`OBX[2]-3.1` beside `OBX-2[3].1`): such pairs once shared a variable."""
    out = []
    for seg, occurrence, field, repetition, component in draw(st.lists(PART, min_size=1, max_size=5)):
        out.append(f"{seg}{occurrence}-{field}{repetition}{component}")
        if draw(st.booleans()):
            out.append(f"{seg}{repetition}-{field}{occurrence}{component}")
        if repetition not in ("", "[*]"):
            out.append(f"{seg}[{field}]-{repetition[1:-1]}{occurrence}{component}")
    return out


def single(path: str) -> str:
    """The path reading one value (`[*]` → `[1]`), for templates and record ids."""
    return path.replace("[*]", "[1]")


@st.composite
def where_paths(draw: st.DrawFn, pool: list[str]) -> str:
    """`PID-3[*].1 where PID-3[*].5 == ID`: value and condition on the field of a path."""
    path = draw(st.sampled_from(pool))
    head = path.split("-")[0] + "-" + path.split("-")[1].split("[")[0].split(".")[0] + "[*]"
    value, cond = draw(COMPONENT), draw(COMPONENT.filter(bool))
    op, lit = draw(st.sampled_from(["==", "!="])), draw(st.sampled_from(LITERALS))
    return f"{head}{value} where {head}{cond} {op} {lit}"


# --------------------------------------------------------------------------- conditions


@st.composite
def conditions(draw: st.DrawFn, pool: list[str], depth: int = 2) -> str:
    path = draw(st.sampled_from(pool))
    lit = draw(st.sampled_from(LITERALS))
    tests = [
        f"{path} == {lit}",
        f"{path} != {lit}",
        f"{path} in [{lit}, a]",
        f"{path} not in [{lit}]",
        path,
        f"{path} startswith {lit}",
        f"{path} contains {lit}",
    ]
    test = draw(st.sampled_from(tests))
    if depth and draw(st.booleans()):
        other = draw(conditions(pool, depth - 1))
        return draw(st.sampled_from([f"{test} and {other}", f"{test} or {other}", f"not ({test})"]))
    return test


# --------------------------------------------------------------------------- rules


def fields_of(rule: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(NAMES), rule, min_size=1, max_size=4)


def finished(base: st.SearchStrategy[dict[str, Any]], pool: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """A rule with some of converter, default, required, join and when around it."""
    extras = st.fixed_dictionaries(
        {},
        optional={
            "convert": st.sampled_from(["text", "number", "coded"]),
            "default": st.sampled_from(["d", "0"]),
            "required": st.booleans(),
            "join": st.sampled_from([",", "\n"]),
            "when": conditions(pool, 1),
        },
    )
    return st.tuples(base, extras).map(lambda t: {**t[0], **t[1]})


def rules(pool: list[str], depth: int = 2) -> st.SearchStrategy[Any]:
    path = st.sampled_from(pool)
    leaves: list[st.SearchStrategy[Any]] = [
        path,
        where_paths(pool),
        st.tuples(path, path).map(lambda p: f"x{{{single(p[0])}}}-{{{single(p[1])}}}"),
        finished(path.map(lambda p: {"path": p}), pool),
        st.sampled_from(LITERALS).map(lambda v: {"const": v}),
        st.just({"path": "OBX-5", "type_from": "OBX-2"}),
        st.sampled_from(LITERALS).map(lambda code: {"obx": code}),
        st.lists(path, min_size=1, max_size=3).map(lambda p: {"first": p}),
    ]
    if depth:
        inner = rules(pool, depth - 1)
        segment = st.sampled_from(SEGMENTS)
        leaves += [
            finished(
                st.tuples(segment, fields_of(inner), st.one_of(st.none(), conditions(pool, 1))).map(
                    lambda t: {"each": t[0], "fields": t[1], **({"where": t[2]} if t[2] else {})}
                ),
                pool,
            ),
            st.tuples(segment, inner).map(lambda t: {"each": t[0], "value": t[1], "join": ";"}),
            st.tuples(path, st.lists(st.sampled_from([".1", ".2", ".1.1", ".2.2"]), min_size=1)).map(
                lambda t: {
                    "each": t[0].split("-")[0] + "-" + t[0].split("-")[1].split("[")[0].split(".")[0] + "[*]",
                    "fields": {f"p{i}": rel for i, rel in enumerate(t[1])},
                }
            ),
            fields_of(inner).map(lambda f: {"fields": f}),
            st.lists(inner, min_size=1, max_size=3).map(lambda options: {"first": options}),
        ]
    return st.one_of(leaves)


@st.composite
def cases(draw: st.DrawFn) -> tuple[dict[str, Any], list[str]]:
    """A mapping over a random path set, and messages built from the segments it names."""
    pool = draw(path_sets())
    records = []
    for _ in range(draw(st.integers(1, 2))):
        record: dict[str, Any] = {
            "type": "LabResult",
            "record_id": draw(st.one_of(st.sampled_from(pool).map(single), st.just({"const": "r1"}))),
            "fields": draw(fields_of(rules(pool))),
        }
        if draw(st.booleans()):  # the whole path set read side by side, in one function
            record["fields"]["every"] = {f"p{i}": path for i, path in enumerate(pool)}
        if draw(st.booleans()):
            record["each"] = draw(st.sampled_from(SEGMENTS))
        if draw(st.booleans()):
            record["when"] = draw(conditions(pool))
        records.append(record)
    named = sorted({p.split("[")[0].split("-")[0] for p in pool} - {"MSH"}) or list(SEGMENTS)
    segment = st.lists(FIELD, min_size=3, max_size=5)
    # Each named segment one to three times, so occurrences [2] and [3] have something to read.
    body = st.lists(st.sampled_from(named), min_size=len(named), max_size=3 * len(named)).map(
        lambda names: [*named, *names]
    )
    messages = st.tuples(MSH, body.flatmap(st.permutations)).flatmap(
        lambda m: st.tuples(*(segment.map(lambda f, n=n: "|".join([n, *f])) for n in m[1])).map(
            lambda segs, head=m[0]: "\r".join([head, *segs])
        )
    )
    texts = draw(st.lists(messages, min_size=1, max_size=3))
    return {"mapping": "generated", "records": records}, texts


# --------------------------------------------------------------------------- comparison


def _outcome(getter: Any, ctx: Ctx) -> tuple[str, str]:
    try:
        return "ok", repr(getter(ctx))
    except Exception as exc:
        return type(exc).__name__, str(exc)


def _compile(spec: dict[str, Any]) -> Mapping:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "generated.yaml"
        path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), "utf-8")
        return load_mapping(path, display="generated.yaml")


def assert_generated_equals_closures(mapping: Mapping, texts: list[str]) -> int:
    compared = 0
    for text in texts:
        base = Ctx(message=Message(text))
        for rule in mapping.records:
            contexts = [base] if rule.each is None else _groups(base, rule.each)
            for ctx in contexts:
                for getter in (rule.when, rule.record_id, rule.event_time, rule.fields):
                    closure = getattr(getter, "closure", None)
                    if closure is not None:
                        assert _outcome(getter, ctx) == _outcome(closure, ctx), (text, getter.__name__)
                        compared += 1
    return compared


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_generated_code_equals_the_closures(case: tuple[dict[str, Any], list[str]]) -> None:
    """Any mapping the strategies write, on any message they build: the same values and errors."""
    spec, texts = case
    assert_generated_equals_closures(_compile(spec), texts)


def test_paths_that_differ_only_in_where_the_number_sits_read_their_own_values() -> None:
    """`OBX-2[2].1` (second repetition of the first OBX) and `OBX[2]-2.1` (first repetition of
    the second OBX) were one variable in generated code, so one read the other's value."""
    spec = {
        "mapping": "collision",
        "records": [
            {
                "type": "LabResult",
                "record_id": {"const": "r1"},
                "fields": {"rep": "OBX-2[2].1", "occ": "OBX[2]-2.1", "sub": "OBX-2[2].1.1"},
            }
        ],
    }
    mapping = _compile(spec)
    message = Message("MSH|^~\\&|LIS|FY01|MCH|FY01|20240321||ORU^R01|1|P|2.5\rOBX|1|A1^x~A2^y\rOBX|2|B1^z")
    record = mapping.records[0].fields(Ctx(message=message))
    assert record == {"rep": "A2", "occ": "B1", "sub": "A2"}
    assert assert_generated_equals_closures(mapping, [str(message)]) == 3
