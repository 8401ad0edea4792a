"""A channel type and a destination type that exist only in the tests, registered on demand.

`toy_drop` journals the HL7 messages its settings name when started; `toy_sink` keeps what
it is given in a list. They prove that a connector is nothing but a registration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from pydantic import Field

from channels.intake.examine import Policy
from channels.mllp.ingest import examine
from core import connectors
from core.settings import Channel, Destination, Settings


class ToyChannel(Channel):
    """Journals the messages listed here when the engine starts."""

    type: Literal["toy_drop"] = Field(description="Channel type.")
    messages: list[str] = Field(default_factory=list, description="HL7 messages, segments split by \\r.")


class ToyDestination(Destination):
    """Keeps every envelope delivered to it in memory."""

    type: Literal["toy_sink"] = Field(description="Destination type.")
    label: str = Field(default="", description="A name for the test to find.")


@dataclass
class ToySource:
    name: str
    policy: Policy
    messages: list[str]
    context: Any
    counters: dict[str, int] = field(default_factory=lambda: {"received": 0})

    async def start(self) -> None:
        for text in self.messages:
            for verdict in examine(text.encode(), self.policy, "toy"):
                self.context.writer.submit(verdict.entry).result(10)
                self.counters["received"] += 1

    async def stop(self, grace: float) -> None:
        return None


@dataclass
class ToySink:
    label: str
    stored: list[dict[str, Any]] = field(default_factory=list)

    def store(self, envelopes: list[dict[str, Any]]) -> None:
        self.stored.extend(envelopes)


SINKS: dict[str, ToySink] = {}
PREPARED: list[str] = []


def _configure(name: str, channel: ToyChannel, settings: Settings) -> tuple[str, Policy, list[str]]:
    return name, Policy(name, timezone=ZoneInfo(settings.engine.timezone)), channel.messages


def _build_source(config: tuple[str, Policy, list[str]], context: Any) -> ToySource:
    name, policy, messages = config
    return ToySource(name, policy, messages, context)


def _prepare(name: str, destination: ToyDestination, context: Any) -> None:
    PREPARED.append(name)


def _build_sink(name: str, destination: ToyDestination, context: Any) -> ToySink:
    return SINKS.setdefault(name, ToySink(destination.label))


TOY_SOURCE = connectors.SourceType("toy_drop", ToyChannel, _configure, _build_source)
TOY_DESTINATION = connectors.DestinationType("toy_sink", ToyDestination, _build_sink, _prepare)


@contextmanager
def toy_connectors() -> Iterator[None]:
    """Both toy types registered for the duration of a test."""
    SINKS.clear()
    PREPARED.clear()
    connectors.register_source(TOY_SOURCE)
    connectors.register_destination(TOY_DESTINATION)
    try:
        yield
    finally:
        connectors.unregister(TOY_SOURCE)
        connectors.unregister(TOY_DESTINATION)
