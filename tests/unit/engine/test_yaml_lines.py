"""YAML with line numbers, `${VAR}` substitution and pydantic errors as `file:line` lines."""

from __future__ import annotations

import textwrap
import time
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field

from core.errors import ConfigError, ConfigErrors
from core.yaml_lines import MAX_DEPTH, LineMap, dotted, load_yaml, parse_yaml, problems_of, validate


def _yaml(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


def _problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises((ConfigError, ConfigErrors)) as caught:
        load_yaml(_yaml(text), "f.yaml", env)
    assert isinstance(caught.value, ConfigError | ConfigErrors)
    return [str(e) for e in problems_of(caught.value)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Pipe(_Strict):
    type: Literal["pipe"]
    listen: str
    size: int = 1


class _Tap(_Strict):
    type: Literal["tap"]
    path: str


class _Doc(_Strict):
    name: str
    things: dict[str, Annotated[_Pipe | _Tap, Field(discriminator="type")]] = {}
    items: list[int] = []


def test_line_of_points_at_keys_values_and_items() -> None:
    """Every mapping entry and sequence item is found at its 1-based line."""
    data, lines = load_yaml(
        _yaml(
            """
            channels:
              lis:
                listen: 127.0.0.1:2575
            routes:
              - name: a
                to: [x,
                  y]
            """
        ),
        "f.yaml",
    )
    assert data["routes"][0]["to"] == ["x", "y"]
    assert lines.line_of(()) == 1
    assert lines.line_of(("channels", "lis")) == 2
    assert lines.line_of(("channels", "lis", "listen")) == 3
    assert lines.line_of(("routes", 0)) == 5
    assert lines.line_of(("routes", 0, "to")) == 6
    assert lines.line_of(("routes", 0, "to", 1)) == 7


def test_line_of_falls_back_to_the_nearest_enclosing_location() -> None:
    """A location that was never written (a missing key) reports its parent's line."""
    _, lines = load_yaml("a:\n  b:\n    c: 1\n", "f.yaml")
    assert lines.line_of(("a", "b", "missing", 3)) == 2
    assert LineMap().line_of(("x",)) is None


def test_a_scalar_value_on_its_own_line_is_found_there() -> None:
    """A scalar written below its key is reported at the value's line."""
    _, lines = load_yaml("key:\n  value\n", "f.yaml")
    assert lines.line_of(("key",)) == 2


def test_duplicate_key_is_reported_at_the_second_occurrence() -> None:
    """A key written twice in one mapping is an error on the second line, naming the first."""
    assert _problems(
        """
        channels:
          lis:
            listen: a
            type: mllp
            listen: b
        """
    ) == ["f.yaml:5: channels.lis: duplicate key 'listen' (first at line 3)"]


def test_same_key_in_different_mappings_is_fine() -> None:
    """Keys only clash within one mapping."""
    data, _ = load_yaml("a: {x: 1}\nb: {x: 2}\n", "f.yaml")
    assert data == {"a": {"x": 1}, "b": {"x": 2}}


def test_yaml_syntax_error_reports_pyyaml_line() -> None:
    """Unparseable YAML becomes one ConfigError at the line PyYAML names."""
    assert _problems(
        """
        a: 1
        b: [1, 2
        c: 3
        """
    ) == [
        "f.yaml:3: invalid YAML: expected ',' or ']', but got ':' (while parsing a flow sequence at line 2)"
    ]


def test_a_date_the_calendar_does_not_have_is_an_error_at_its_line() -> None:
    """`1994-02-31` has a date's shape, so YAML builds a date and the calendar refuses it: a
    problem at its line, in a value or a key, never a bare ValueError (found by fuzzing)."""
    assert _problems(
        """
        person: {birth_date: 1994-02-31}
        2024-13-01: x
        """
    ) == [
        "f.yaml:1: person.birth_date: '1994-02-31' is not a valid date or time (day is out of range for month)",
        "f.yaml:2: '2024-13-01' is not a valid date or time (month must be in 1..12)",
    ]


def test_tab_indentation_gets_a_hint() -> None:
    """A tab used for indentation is explained, since YAML forbids it."""
    (problem,) = _problems("a:\n\tb: 1\n")
    assert problem.startswith("f.yaml:2: invalid YAML: found character '\\t'")
    assert problem.endswith("; indent with spaces, not tabs")


def test_unquoted_asterisk_gets_a_hint() -> None:
    """`message_type: *` is a YAML alias; the error says to quote it."""
    (problem,) = _problems("message_type: *\n")
    assert problem.startswith("f.yaml:1: invalid YAML:")
    assert problem.endswith('quote a literal asterisk: "*"')


def test_unquoted_reference_in_flow_mapping_gets_a_hint() -> None:
    """`{b: ${X}}` is invalid YAML; the error says to quote the reference."""
    (problem,) = _problems("j: {b: ${MCH_B:-500}}\n", {})
    assert problem == (
        "f.yaml:1: invalid YAML: expected ',' or '}', but got '{' (while parsing a flow "
        'mapping); inside { } or [ ], quote values that use ${...}: "${VAR}"'
    )


def test_merge_keys_fill_in_without_overriding() -> None:
    """`<<: *anchor` brings in keys the mapping does not set itself."""
    data, lines = load_yaml("base: &b {x: 1, y: 2}\nthing:\n  <<: *b\n  y: 3\n", "f.yaml")
    assert data["thing"] == {"x": 1, "y": 3}
    assert lines.line_of(("thing", "y")) == 4


def test_unset_variable_without_default_is_an_error() -> None:
    """`${VAR}` with VAR unset names the variable, the line and how to give a default."""
    assert _problems("engine:\n  broker: ${MCH_X}\n", {}) == [
        "f.yaml:2: engine.broker: environment variable MCH_X is not set "
        "(use ${MCH_X:-default} for a fallback)"
    ]


def test_every_unset_variable_is_reported() -> None:
    """Several unset variables give one problem each, as ConfigErrors."""
    with pytest.raises(ConfigErrors) as caught:
        load_yaml("a: ${A}\nb: x-${B}-y\n", "f.yaml", {})
    assert [(e.line, e.message.split(":")[0]) for e in caught.value.errors] == [
        (1, "a"),
        (2, "b"),
    ]


def test_variables_and_defaults_are_substituted() -> None:
    """Set variables are used; `${VAR:-default}` falls back when unset or empty."""
    data, _ = load_yaml(
        "a: ${SET}\nb: ${UNSET:-memory://}\nc: ${EMPTY:-fallback}\nd: ${UNSET:-}\ne: pre-${SET}-post\n",
        "f.yaml",
        {"SET": "amqp://h", "EMPTY": ""},
    )
    assert data == {
        "a": "amqp://h",
        "b": "memory://",
        "c": "fallback",
        "d": "",
        "e": "pre-amqp://h-post",
    }


def test_double_dollar_escapes_a_literal_reference() -> None:
    """`$${VAR}` is the literal text `${VAR}`, even when VAR is unset."""
    data, _ = load_yaml("a: $${HOME}\n", "f.yaml", {})
    assert data == {"a": "${HOME}"}


def test_substituted_values_are_strings() -> None:
    """A number from the environment stays a string; pydantic coerces it later."""
    data, _ = load_yaml("port: ${PORT}\nplain: 5\n", "f.yaml", {"PORT": "2575"})
    assert data == {"port": "2575", "plain": 5}


def test_without_env_nothing_is_substituted() -> None:
    """Substitution only happens when an environment is passed in."""
    data, _ = load_yaml("a: ${UNSET}\n", "f.yaml")
    assert data == {"a": "${UNSET}"}


def test_keys_are_never_substituted() -> None:
    """Only values are expanded, so a key cannot change with the environment."""
    data, _ = load_yaml("${K}: v\n", "f.yaml", {"K": "x"})
    assert data == {"${K}": "v"}


def test_malformed_reference_is_an_error() -> None:
    """A `${` that is not a valid reference is reported rather than kept as text."""
    assert _problems("a: ${not closed\n", {}) == [
        "f.yaml:1: a: malformed variable reference '${not closed' "
        "(write ${NAME} or ${NAME:-default}; $${ is a literal ${)"
    ]


def test_parse_yaml_collects_without_raising() -> None:
    """parse_yaml returns the data alongside its problems, for `check`."""
    parsed = parse_yaml("a: ${A}\na: 2\n", "f.yaml", {})
    assert parsed.data == {"a": 2}
    assert [p.line for p in parsed.problems] == [1, 2]
    assert ("a",) in parsed.unresolved


def test_unknown_key_suggests_the_closest_field() -> None:
    """A misspelt key names the key it probably meant, without a cascade of 'missing'."""
    text = _yaml(
        """
        name: x
        things:
          a:
            type: pipe
            listn: 1
        """
    )
    data, lines = load_yaml(text, "f.yaml")
    with pytest.raises(ConfigErrors) as caught:
        validate(_Doc, data, lines, "f.yaml")
    assert str(caught.value) == "f.yaml:5: things.a: unknown key 'listn' (did you mean 'listen'?)"


def test_unknown_key_without_close_match_lists_known_keys() -> None:
    """When nothing is close, the keys that are allowed are listed."""
    data, lines = load_yaml("name: x\nzzz: 1\n", "f.yaml")
    with pytest.raises(ConfigErrors) as caught:
        validate(_Doc, data, lines, "f.yaml")
    assert str(caught.value) == "f.yaml:2: unknown key 'zzz' (known: items, name, things)"


def test_unknown_discriminated_type_names_known_types() -> None:
    """An unknown `type` in a union says which types exist and which was meant."""
    data, lines = load_yaml("name: x\nthings:\n  a:\n    type: pipf\n", "f.yaml")
    with pytest.raises(ConfigErrors) as caught:
        validate(_Doc, data, lines, "f.yaml")
    assert str(caught.value) == (
        "f.yaml:4: things.a.type: unknown thing type 'pipf' (known: pipe, tap; did you mean 'pipe'?)"
    )


def test_one_problem_per_pydantic_error_with_lines() -> None:
    """Each validation error becomes its own `file:line: location: message`."""
    text = _yaml(
        """
        things:
          a: {type: pipe, listen: x, size: big}
          b:
            type: tap
        items: [1, two]
        """
    )
    data, lines = load_yaml(text, "f.yaml")
    with pytest.raises(ConfigErrors) as caught:
        validate(_Doc, data, lines, "f.yaml")
    assert [str(e) for e in caught.value.errors] == [
        "f.yaml:1: missing required key 'name'",
        "f.yaml:2: things.a.size: input should be a valid integer, unable to parse string as "
        "an integer, got 'big'",
        "f.yaml:3: things.b: missing required key 'path'",
        "f.yaml:5: items[1]: input should be a valid integer, unable to parse string as an "
        "integer, got 'two'",
    ]


def test_passwords_in_urls_are_hidden_from_messages() -> None:
    """A URL echoed in an error line never shows its password."""
    data, lines = load_yaml("name: x\nitems: ['amqp://mch:s3cret@mq:5672/']\n", "f.yaml")
    with pytest.raises(ConfigErrors) as caught:
        validate(_Doc, data, lines, "f.yaml")
    assert "s3cret" not in str(caught.value)
    assert "amqp://mch:***@mq:5672/" in str(caught.value)


def test_valid_data_returns_the_model() -> None:
    """validate returns the model instance when nothing is wrong."""
    data, lines = load_yaml("name: x\nthings: {a: {type: tap, path: /p}}\n", "f.yaml")
    doc = validate(_Doc, data, lines, "f.yaml")
    assert isinstance(doc.things["a"], _Tap)


def test_dotted_renders_indexes_in_brackets() -> None:
    """Locations print as engineers write them: `routes[0].to[1]`."""
    assert dotted(("routes", 0, "to", 1)) == "routes[0].to[1]"
    assert dotted(()) == ""


LAUGHS = "\n".join(
    [
        'a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]" for p, n in zip("abcdefgh", "bcdefghi", strict=True)),
    ]
)


def test_an_alias_bomb_is_refused_at_its_line_before_it_is_expanded() -> None:
    """Nine lines of anchors standing for 387 million strings give one error at the line where
    the expansion passes the bound, in a fraction of a second and without the memory."""
    started = time.perf_counter()
    assert _problems(LAUGHS) == ["f.yaml:6: aliases expand to more than 100,000 values; write the values out"]
    assert time.perf_counter() - started < 0.5


def test_aliases_used_within_the_bound_still_work() -> None:
    """Anchors and merges that expand to a normal size load as before."""
    data, _ = load_yaml(_yaml(LAUGHS.split("\nd:")[0]), "f.yaml")
    assert len(data["c"]) == 9 and data["c"][8][8] == ["lol"] * 9


def test_nesting_past_the_bound_is_refused_without_a_traceback() -> None:
    """Nesting past MAX_DEPTH names its line; nesting that breaks the YAML reader is one line too."""
    assert _problems("x: " + "[" * (MAX_DEPTH + 5) + "]" * (MAX_DEPTH + 5)) == [
        f"f.yaml:1: nested more than {MAX_DEPTH} levels deep"
    ]
    assert _problems("x: " + "[" * 5000 + "]" * 5000) == [
        f"f.yaml: invalid YAML: nested more than {MAX_DEPTH} levels deep"
    ]
