"""Which routes a message takes: matched on its channel and its MSH-9 message type."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from core import settings
from core.audience import SYSTEM, may_receive
from transforms.hl7v2 import Message
from transforms.mapping import Ctx
from transforms.mapping import Mapping as MappingFile
from transforms.mapping.compiler import compile_message_condition
from transforms.mapping.passthrough import PassThrough


@dataclass(frozen=True, slots=True)
class Route:
    """A route of routes.yaml with its mapping compiled."""

    spec: settings.Route
    mapping: MappingFile | PassThrough
    when: Callable[[Ctx], bool] | None = None
    reaches: Mapping[str, str] = field(default_factory=dict)  # destination → whom it reaches

    @classmethod
    def build(
        cls,
        spec: settings.Route,
        mapping: MappingFile | PassThrough,
        reaches: Mapping[str, str] | None = None,
    ) -> Route:
        """`reaches`: each destination's `reaches:` setting (absent: `system`)."""
        when = compile_message_condition(spec.when) if spec.when else None
        return cls(spec, mapping, when, dict(reaches or {}))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def destinations(self) -> tuple[str, ...]:
        return tuple(self.spec.to)

    def destinations_for(self, audience: str | None) -> tuple[list[str], list[str]]:
        """The destinations a record for `audience` goes to, and those it is withheld from
        (core/audience.py: never a `patient` destination, whatever `to:` says)."""
        if not audience:
            return list(self.destinations), []
        allowed: list[str] = []
        withheld: list[str] = []
        for dest in self.destinations:
            (allowed if may_receive(self.reaches.get(dest, SYSTEM), audience) else withheld).append(dest)
        return allowed, withheld

    def matches(self, channel: str, message_type: str) -> bool:
        """Channel and MSH-9 only (cacheable); `accepts` adds the `when:` condition."""
        return channel in self.spec.from_ and self.spec.matches(message_type)

    def accepts(self, message: Message) -> bool:
        return self.when is None or self.when(Ctx(message=message))


class Router:
    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        self._cache: dict[tuple[str, str], Sequence[Route]] = {}

    def match(self, channel: str, message_type: str, message: Message | None = None) -> Sequence[Route]:
        """Routes for this channel and MSH-9 (cached: few distinct pairs), then those whose
        `when:` holds for the message, in file order."""
        key = (channel, message_type)
        found = self._cache.get(key)
        if found is None:
            found = tuple(r for r in self.routes if r.matches(channel, message_type))
            if len(self._cache) < 10_000:
                self._cache[key] = found
        if message is None:
            return found
        ctx = Ctx(message=message)  # one context for every condition: they only read it
        return tuple(r for r in found if r.when is None or r.when(ctx))
