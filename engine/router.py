"""Which routes a message takes: matched on its channel and its MSH-9 message type."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from engine import settings
from transforms.mapping import Mapping


@dataclass(frozen=True, slots=True)
class Route:
    """A route of routes.yaml with its mapping compiled."""

    spec: settings.Route
    mapping: Mapping

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(self.spec.to)

    def matches(self, channel: str, message_type: str) -> bool:
        return channel in self.spec.from_ and self.spec.matches(message_type)


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._cache: dict[tuple[str, str], Sequence[Route]] = {}

    def match(self, channel: str, message_type: str) -> Sequence[Route]:
        """Routes for this channel and MSH-9, in file order (cached: few distinct pairs)."""
        key = (channel, message_type)
        found = self._cache.get(key)
        if found is None:
            found = tuple(r for r in self.routes if r.matches(channel, message_type))
            if len(self._cache) < 10_000:
                self._cache[key] = found
        return found
