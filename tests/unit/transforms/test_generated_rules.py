"""Generated mapping functions give exactly what the rule closures they come from give.

Every shipped mapping is applied both ways (the generated function and its `closure`) to
the shipped samples, the conformance corpus, the benchmark mix and variants of them with
HL7 nulls, escapes, sub-components, repetitions and missing fields written into their
fields, so the rare branches of the generated reads are reached too. Values and errors
(type and text) must be equal.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import shipped_mappings
from transforms.decode import decode
from transforms.hl7v2 import Message, read_msh
from transforms.mapping.compiler import Mapping, load_mapping, mapping_source
from transforms.mapping.getters import Ctx, _groups

REPO = Path(__file__).resolve().parents[3]
CORPUS = Path(os.environ.get("MCH_CONFORMANCE_DIR", REPO.parent / "shared" / "conformance" / "hl7v2"))
# Every mapping file that reads HL7 (the shipped row mappings read DB rows).
MAPPINGS = [p for p in shipped_mappings() if "input: row" not in p.read_text("utf-8")]
ODD = ['""', "\\S\\x", "a&b", "x~y", "", "1^2^3", "\\H\\", "a\\T\\b", "20250310", "ID", "L", "HH"]


def _load(path: Path) -> Mapping:
    mapping = load_mapping(path)
    assert mapping.input == "hl7", path
    return mapping


def _texts() -> Iterator[str]:
    files = sorted((REPO / "mappings").rglob("samples/*.hl7"))
    if CORPUS.is_dir():
        files += sorted(CORPUS.rglob("*.hl7"))
    for path in files:
        raw = path.read_bytes()
        try:
            charset = read_msh(raw).charset or "utf-8"
            yield decode(raw, charset)
        except Exception:
            try:
                yield raw.decode("utf-8", "replace")
            except Exception:
                continue
    from bench.messages import MessageFactory

    factory = MessageFactory("GEN001")
    for seq in range(40):
        out = factory.message(seq)
        yield out.payload.decode(out.charset or "utf-8", "replace")


def _variants(text: str, rng: random.Random) -> Iterator[str]:
    """The message, then copies with odd values written into random fields."""
    yield text
    lines = text.replace("\n", "\r").split("\r")
    for _ in range(6):
        out = []
        for line in lines:
            parts = line.split("|")
            if len(parts) > 2 and not line.startswith("MSH"):
                for _ in range(3):
                    i = rng.randrange(1, len(parts) + 2)
                    while len(parts) <= i:
                        parts.append("")
                    parts[i] = rng.choice(ODD)
            out.append("|".join(parts))
        yield "\r".join(out)


def _outcome(getter: Any, ctx: Ctx) -> tuple[str, Any]:
    try:
        return "ok", repr(getter(ctx))
    except Exception as exc:
        return type(exc).__name__, str(exc)


def _both(getter: Any, ctx: Ctx) -> None:
    closure = getattr(getter, "closure", None)
    if closure is not None:
        assert _outcome(getter, ctx) == _outcome(closure, ctx)


@pytest.mark.parametrize("path", MAPPINGS, ids=lambda p: p.relative_to(REPO / "mappings").as_posix())
def test_generated_equals_closures(path: Path) -> None:
    mapping = _load(path)
    rng = random.Random(path.name)
    checked = 0
    for text in _texts():
        for variant in _variants(text, rng):
            try:
                message = Message(variant)
            except ValueError:
                continue
            base = Ctx(message=message)
            for rule in mapping.records:
                contexts = [base] if rule.each is None else _groups(base, rule.each)
                for ctx in contexts:
                    for getter in (rule.when, rule.record_id, rule.event_time, rule.fields):
                        _both(getter, ctx)
                    checked += 1
    assert checked > 100


def test_source_is_printable() -> None:
    source = mapping_source(load_mapping(REPO / "mappings" / "lis" / "oru_r01.yaml"))
    assert "def fields(ctx):" in source and "def each_OBX(ctx):" in source
    compile(source, "<printed>", "exec")
