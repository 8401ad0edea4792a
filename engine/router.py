"""Which routes a message takes: matched on its channel and its MSH-9 message type."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from transforms.mapping import Mapping


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    channels: frozenset[str]
    message_types: frozenset[str]  # "ADT^A04", "ADT", or "*"
    mapping: Mapping
    destinations: tuple[str, ...]

    def matches(self, channel: str, message_type: str) -> bool:
        if channel not in self.channels:
            return False
        if not self.message_types or "*" in self.message_types:
            return True
        kind, event = _type_and_event(message_type)
        return f"{kind}^{event}" in self.message_types or kind in self.message_types


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._cache: dict[tuple[str, str], Sequence[Route]] = {}

    def match(self, channel: str, message_type: str) -> Sequence[Route]:
        key = (channel, message_type)
        found = self._cache.get(key)
        if found is None:
            found = tuple(r for r in self.routes if r.matches(channel, message_type))
            if len(self._cache) < 10_000:
                self._cache[key] = found
        return found


def _type_and_event(message_type: str) -> tuple[str, str]:
    """`ADT^A04^ADT_A01` → ("ADT", "A04"); any component separator is accepted."""
    for sep in "^":
        parts = message_type.split(sep)
        if len(parts) > 1:
            return parts[0].strip().upper(), parts[1].strip().upper()
    return message_type.strip().upper(), ""
