"""`mch-engine mapping explain FILE.hl7`: which record fields each field of a message could fill.

Static: the answer comes from the mappings as written, never from the message's values,
which are patient data and must not reach a screen or a log. The message only says
which fields are present (and how often), which `{obx: CODE}` observations it holds,
and how many of its codes a code table lists; each target names what has to hold
before it is filled (`when:`/`where` conditions, the code table). The records
themselves are `mapping run`'s answer. hl7apy names the fields (PID-5 → Patient Name);
it is used only here and for strict validation, never on the hot path.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from transforms.hl7v2 import Message, Segment, parse_path
from transforms.mapping.compiler import Mapping
from transforms.mapping.targets import Target

_VERSIONS = (
    "2.1",
    "2.2",
    "2.3",
    "2.3.1",
    "2.4",
    "2.5",
    "2.5.1",
    "2.6",
    "2.7",
    "2.8",
    "2.8.1",
    "2.8.2",
)


@dataclass(frozen=True, slots=True)
class TargetLine:
    target: Target
    listed: int | None = None  # with a code table: how many of the message's codes it lists


@dataclass
class FieldLine:
    field: str  # e.g. OBX-3
    name: str | None  # e.g. Observation Identifier; None: not a standard field
    count: int  # segments in which it has a value
    targets: list[TargetLine] = field(default_factory=list)


def explain_fields(message: Message, mappings: Sequence[Mapping]) -> list[FieldLine]:
    """Each field that has a value in the message, once, in message order, with its targets."""
    msh = message.segment("MSH")
    version = _version(str(msh.get(12, 1, 1) or "") if msh else "")
    present: dict[str, list[Segment]] = {}
    for seg in message.segments():
        for n in range(1, len(seg)):
            if seg.field(n):
                present.setdefault(f"{seg.name}-{n}", []).append(seg)
    obx_codes = {str(seg.get(3, 1, 1) or "") for seg in message.segments("OBX")}
    lines = []
    for key, segments in present.items():
        name, _, n = key.partition("-")
        line = FieldLine(key, field_name(name, int(n), version), len(segments))
        for mapping in mappings:
            for target in mapping.paths.get(key, []):
                if target.obx_code is not None and target.obx_code not in obx_codes:
                    continue  # an observation this message does not hold
                line.targets.append(TargetLine(target, _listed(target, segments)))
        lines.append(line)
    return lines


def record_types(mappings: Sequence[Mapping]) -> list[str]:
    """The record types these mappings can make, in file order."""
    return list(dict.fromkeys(rule.type for mapping in mappings for rule in mapping.records))


def _listed(target: Target, segments: list[Segment]) -> int | None:
    """How many of these segments hold a code the target's table lists (None: no table)."""
    if target.table_codes is None:
        return None
    path = parse_path(target.source)
    rep, comp, sub = path.repetition or 1, path.component, path.subcomponent
    codes = [seg.value(path.field, rep, comp, sub) for seg in segments]
    return sum(1 for code in codes if isinstance(code, str) and target.fills(code))


def _version(declared: str) -> str:
    return declared if declared in _VERSIONS else "2.5"


@lru_cache(maxsize=4096)
def field_name(segment: str, n: int, version: str) -> str | None:
    """hl7apy's name of a field (e.g. PID-5 → Patient Name); None for a Z-segment's field or
    one the standard does not define."""
    if segment.startswith("Z"):
        return None
    try:
        from hl7apy import load_reference

        ref = load_reference(segment, "Segment", version)
    except Exception:
        return None
    children = ref[1] if isinstance(ref, tuple) and len(ref) > 1 else ()
    if n - 1 < len(children):
        name = children[n - 1][1][3]
        return str(name).replace("_", " ").title()
    return None
