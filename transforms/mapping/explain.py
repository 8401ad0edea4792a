"""`mch-engine mapping explain FILE.hl7`: every field of a message, its HL7 name, and where it goes.

For each valued field the output names the field (from hl7apy's tables for the
message's version), shows the value, and lists the record fields the matching
routes' mappings fill from it — or says "not mapped". A message no route takes is
reported as unmapped with the reason, so every message of a corpus gets an answer.
hl7apy is used only here and for strict validation, never on the hot path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from engine.errors import DecodeError, InputError, ParseError
from transforms.decode import choose_encoding, decode
from transforms.hl7v2 import Message, read_msh

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


@dataclass
class FieldLine:
    path: str
    name: str
    value: str
    targets: list[str]


@dataclass
class Explanation:
    message_type: str = ""
    routes: list[str] = field(default_factory=list)
    unmapped_reason: str | None = None
    fields: list[FieldLine] = field(default_factory=list)
    records: list[str] = field(default_factory=list)
    error: str | None = None


def explain(raw: bytes, router: Any, channel: str | None, channel_encoding: str = "utf-8") -> Explanation:
    """What the engine would make of these bytes on `channel` (None: any channel)."""
    out = Explanation()
    try:
        msh = read_msh(raw)
        text = decode(raw, choose_encoding(msh.charset, channel_encoding), declared=msh.charset)
        message = Message(text)
    except (ParseError, DecodeError, ValueError) as exc:
        out.unmapped_reason = f"rejected at the door (AR): {exc}"
        return out
    out.message_type = msh.message_type
    routes = [
        r
        for r in router.routes
        if (channel is None or channel in r.spec.from_)
        and r.spec.matches(msh.message_type)
        and r.accepts(message)
    ]
    out.routes = [r.name for r in routes]
    targets: dict[str, list[str]] = {}
    for route in routes:
        for hl7_field, names in route.mapping.paths.items():
            targets.setdefault(hl7_field, []).extend(dict.fromkeys(names))
        try:
            out.records += [f"{r.record_type} {r.record_id}" for r in route.mapping.apply(message)]
        except InputError as exc:
            out.error = f"route {route.name}: {exc}"
    if not routes:
        where = f"channel {channel}" if channel else "any channel"
        out.unmapped_reason = f"no route takes {msh.message_type or '(no MSH-9)'} from {where}"
    version = _version(msh.version)
    for seg in message.segments():
        for n in range(1, len(seg)):
            value = seg.field(n)
            if not value:
                continue
            path = f"{seg.name}-{n}"
            found = list(targets.get(path, []))
            if seg.name == "OBX":  # `{obx: CODE}` rules name the observation by its code
                found += targets.get(f"{path} ({seg.get(3, 1, 1)})", [])
            out.fields.append(FieldLine(path, field_name(seg.name, n, version), value, found))
    return out


def _version(declared: str) -> str:
    return declared if declared in _VERSIONS else "2.5"


@lru_cache(maxsize=4096)
def field_name(segment: str, n: int, version: str) -> str:
    """hl7apy's name of a field (e.g. PID-5 → Patient Name), or a note for Z-segments."""
    if segment.startswith("Z"):
        return "(site-defined Z-segment)"
    try:
        from hl7apy import load_reference

        ref = load_reference(segment, "Segment", version)
    except Exception:
        return "(not in HL7 " + version + ")"
    children = ref[1] if isinstance(ref, tuple) and len(ref) > 1 else ()
    if n - 1 < len(children):
        name = children[n - 1][1][3]
        return str(name).replace("_", " ").title()
    return "(beyond the standard's fields)"


def format_explanation(ex: Explanation, limit: int = 80) -> str:
    lines = []
    if ex.unmapped_reason:
        lines.append(f"unmapped: {ex.unmapped_reason}")
    if ex.routes:
        lines.append(f"routes: {', '.join(ex.routes)}")
    if ex.records:
        lines.append(f"records: {'; '.join(ex.records)}")
    if ex.error:
        lines.append(f"mapping error: {ex.error}")
    for f in ex.fields:
        value = f.value if len(f.value) <= limit else f.value[: limit - 1] + "…"
        target = ", ".join(f.targets) if f.targets else "not mapped"
        lines.append(f"{f.path:<8} {f.name:<40} {value:<{min(limit, 40)}}  → {target}")
    return "\n".join(lines)
