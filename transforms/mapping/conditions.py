"""Conditions in mapping files and routes: `MSH-3 == LIS and OBR-4.1 in [MCH-REG, MCH-ANC]`.

Grammar (left side a path, right side always a literal, so `MCH-REG` needs no quotes):

    expr    := and ('or' and)*
    and     := not ('and' not)*
    not     := 'not' not | '(' expr ')' | test
    test    := PATH [('==' | '!=') LITERAL | ['not'] 'in' '[' LITERAL (',' LITERAL)* ']'
                    | 'startswith' LITERAL | 'contains' LITERAL]

A bare PATH is true when it has a value. A path that selects several values
(`PID-3[*].5`) is true when any of them satisfies the test (`!=` and `not in`:
when none of them is the literal). Conditions are compiled once; a syntax error
names the position.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from transforms.mapping import codegen
from transforms.mapping.codegen import attach

Resolve = Callable[[str], Callable[[Any], Any]]  # path text → getter(ctx) → value or list
Test = Callable[[Any], bool]

_TOKEN = re.compile(
    r"""\s*(?:(?P<str>'[^']*'|"[^"]*")"""
    r"""|(?P<word>[^\s()\[\],'"=!]+(?:\[[^\]]*\][^\s()\[\],'"=!]*)*)"""  # PID-3[*].5 is one word
    r"""|(?P<op>==|!=|\(|\)|\[|\]|,))"""
)


class ConditionError(ValueError):
    """A condition that cannot be compiled; the text says where."""


def compile_condition(text: str, resolve: Resolve) -> Test:
    tokens = _tokenize(text)
    parser = _Parser(tokens, text, resolve)
    test = parser.expr()
    if parser.pos != len(tokens):
        raise ConditionError(f"unexpected {tokens[parser.pos][1]!r} in condition {text!r}")
    return test


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ConditionError(f"cannot read condition {text!r} at position {pos + 1}")
        kind = m.lastgroup or ""
        value = m.group(kind)
        if kind == "str":
            value = value[1:-1]
        tokens.append((kind, value))
        pos = m.end()
    return tokens


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], text: str, resolve: Resolve) -> None:
        self.tokens = tokens
        self.text = text
        self.resolve = resolve
        self.pos = 0

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ConditionError(f"condition {self.text!r} ends too early")
        self.pos += 1
        return tok

    def is_word(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "word" and tok[1] == word

    def expr(self) -> Test:
        left = self.conj()
        while self.is_word("or"):
            self.take()
            right = self.conj()
            left = attach(
                (lambda a, b: lambda ctx: a(ctx) or b(ctx))(left, right), codegen.Either(left, right)
            )
        return left

    def conj(self) -> Test:
        left = self.neg()
        while self.is_word("and"):
            self.take()
            right = self.neg()
            left = attach(
                (lambda a, b: lambda ctx: a(ctx) and b(ctx))(left, right), codegen.Both(left, right)
            )
        return left

    def neg(self) -> Test:
        if self.is_word("not"):
            self.take()
            inner = self.neg()
            return attach(lambda ctx: not inner(ctx), codegen.Negation(inner))
        if self.peek() == ("op", "("):
            self.take()
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise ConditionError(f"missing ')' in condition {self.text!r}")
            return inner
        return self.test()

    def literal(self) -> str:
        kind, value = self.take()
        if kind not in ("str", "word"):
            raise ConditionError(f"expected a value after the operator in {self.text!r}")
        return value

    def test(self) -> Test:
        kind, path = self.take()
        if kind != "word":
            raise ConditionError(f"expected a path in condition {self.text!r}, got {path!r}")
        try:
            get = self.resolve(path)
        except ValueError as exc:
            raise ConditionError(str(exc)) from None
        tok = self.peek()
        if tok == ("op", "==") or tok == ("op", "!="):
            self.take()
            lit = self.literal()
            equal = tok[1] == "=="

            def compare(ctx: Any) -> bool:
                value = get(ctx)
                if type(value) is str and value:  # one text: no list to build
                    return (value == lit) is equal
                return (lit in _values(value)) is equal

            return attach(compare, codegen.Compare(get, lit, equal, _values))
        negate = False
        if (
            self.is_word("not")
            and self.pos + 1 < len(self.tokens)
            and self.tokens[self.pos + 1] == ("word", "in")
        ):
            self.take()
            negate = True
        if self.is_word("in"):
            self.take()
            options = self.list_literal()
            if negate:
                test = lambda ctx: options.isdisjoint(_values(get(ctx)))  # noqa: E731
            else:
                test = lambda ctx: not options.isdisjoint(_values(get(ctx)))  # noqa: E731
            return attach(test, codegen.Within(get, options, negate, _values))
        if self.is_word("startswith") or self.is_word("contains"):
            op = self.take()[1]
            lit = self.literal()
            if op == "startswith":
                return lambda ctx: any(v.startswith(lit) for v in _values(get(ctx)))
            return lambda ctx: any(lit in v for v in _values(get(ctx)))

        def present(ctx: Any) -> bool:  # `bool(_values(value))`: some value, not empty text
            value = get(ctx)
            if isinstance(value, list):
                return any(v is not None and v != "" for v in value)
            return value is not None and value != ""

        return attach(present, codegen.Present(get))

    def list_literal(self) -> frozenset[str]:
        if self.take() != ("op", "["):
            raise ConditionError(f"'in' needs a list like [A, B] in {self.text!r}")
        options: list[str] = []
        while True:
            options.append(self.literal())
            tok = self.take()
            if tok == ("op", "]"):
                return frozenset(options)
            if tok != ("op", ","):
                raise ConditionError(f"expected ',' or ']' in {self.text!r}")


def _values(value: Any) -> list[str]:
    """The non-empty values a path gave, as text."""
    if isinstance(value, list):
        return [str(v) for v in value if v is not None and v != ""]
    if value is None or value == "":
        return []
    return [value if type(value) is str else str(value)]
