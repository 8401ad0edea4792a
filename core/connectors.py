"""Source and destination types by name: their settings model and how to build them.

Each connector module under `channels/` registers itself when imported (`channels/__init__.py`
lists them); the settings loader validates a channel or destination by the model registered
for its `type:`, and the runtime builds it through the registered factory. Nothing in the
engine names a concrete connector, so adding one is one module under `channels/`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel

__all__ = [
    "CONNECTOR_PACKAGE",
    "CONNECTOR_PACKAGES",
    "ConnectorContext",
    "DestinationType",
    "SourceType",
    "destination_type",
    "destination_types",
    "generation",
    "load",
    "register_destination",
    "register_source",
    "source_type",
    "source_types",
    "unregister",
]

CONNECTOR_PACKAGE = "channels"
"""Imported once before settings are read: importing it registers every shipped connector."""
CONNECTOR_PACKAGES = (CONNECTOR_PACKAGE, "monitors.alerts.connector")
"""…and the one channel type that reads the engine's own numbers (the `alerts` channel)."""


class ConnectorContext(Protocol):
    """What a factory may use from the running engine (engine/runtime.py provides it)."""

    settings: Any
    writer: Any

    def engine_for(self, url: str) -> Any: ...

    def when_leading(self, start: Callable[[], None], stop: Callable[[], None]) -> None:
        """Run a scheduler only on the server that leads (engine/leadership.py)."""


@dataclass(frozen=True, slots=True)
class SourceType:
    """A channel type: `configure(name, channel, settings)` turns its validated settings
    into the source's own configuration, `build(config, context)` makes the source (with
    `bind`, `serve`, `start`, `stop(grace)`, `reconfigure(config)`, `name`, `port`)."""

    name: str
    model: type[BaseModel]
    configure: Callable[[str, Any, Any], Any]
    build: Callable[[Any, ConnectorContext], Any]
    parts: tuple[tuple[str, type[BaseModel]], ...] = ()
    """Nested settings documented under the type (key, model), e.g. ("ack", AckSettings)."""


@dataclass(frozen=True, slots=True)
class DestinationType:
    """A destination type: `prepare(name, destination, context)` readies what it writes to
    (tables, say) before any process works; `build(...)` makes the sink delivery calls."""

    name: str
    model: type[BaseModel]
    build: Callable[[str, Any, ConnectorContext], Any]
    prepare: Callable[[str, Any, ConnectorContext], None] | None = None
    parts: tuple[tuple[str, type[BaseModel]], ...] = ()


_sources: dict[str, SourceType] = {}
_destinations: dict[str, DestinationType] = {}
_generation = 0


def _add(table: dict[str, Any], kind: str, entry: SourceType | DestinationType) -> None:
    global _generation
    if entry.name in table:
        raise ValueError(f"{kind} type {entry.name!r} is already registered")
    table[entry.name] = entry
    _generation += 1


def register_source(entry: SourceType) -> SourceType:
    """Make a channel type known; a second registration of a name is a programming error."""
    _add(_sources, "channel", entry)
    return entry


def register_destination(entry: DestinationType) -> DestinationType:
    """Make a destination type known; a second registration of a name is a programming error."""
    _add(_destinations, "destination", entry)
    return entry


def unregister(entry: SourceType | DestinationType) -> None:
    """Forget a type (tests that register one of their own)."""
    global _generation
    table: dict[str, Any] = _sources if isinstance(entry, SourceType) else _destinations
    if table.get(entry.name) is entry:
        del table[entry.name]
        _generation += 1


def load() -> None:
    """Import the connector packages once, so their modules register their types."""
    for package in CONNECTOR_PACKAGES:
        importlib.import_module(package)


def generation() -> int:
    """Changes whenever a type is registered or forgotten (models built from these cache on it)."""
    return _generation


def source_types() -> list[SourceType]:
    """By name, so every list of them reads the same whatever imported first."""
    load()
    return sorted(_sources.values(), key=lambda entry: entry.name)


def destination_types() -> list[DestinationType]:
    load()
    return sorted(_destinations.values(), key=lambda entry: entry.name)


def source_type(name: str) -> SourceType:
    load()
    return _sources[name]


def destination_type(name: str) -> DestinationType:
    load()
    return _destinations[name]
