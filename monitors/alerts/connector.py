"""Registers the `alerts` channel type: the engine's own alert rules, evaluated every
`every:` seconds, each transition journaled as an `EngineAlert` record (docs/monitoring.md).

It lives with the monitors because it reads the engine's status; the connector registry
imports it with the connectors under `channels/` (core/connectors.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from core.connectors import ConnectorContext, SourceType, register_source
from core.settings import Channel, PositiveDuration, Settings

if TYPE_CHECKING:
    from monitors.alerts.source import AlertsConfig, AlertSource

RECORD_TYPES = ("EngineAlert",)


class AlertsChannel(Channel):
    """The engine's alerts as records (bounds in the `alerts:` section), so a route sends them
    to the on-call staff like any notice."""

    type: Literal["alerts"] = Field(description="Channel type.")
    every: PositiveDuration = Field(default=30.0, description="Time between two evaluations, e.g. 30s.")

    @property
    def carries_records(self) -> bool:
        return True

    @property
    def record_types(self) -> tuple[str, ...]:
        return RECORD_TYPES

    @property
    def reads_sections(self) -> tuple[str, ...]:
        return ("alerts",)

    def problems_with(self, settings: Any) -> list[tuple[str, str]]:
        others = [n for n, ch in settings.channels.items() if ch is not self and ch.type == "alerts"]
        return [("type", f"one alerts channel is enough; {others[0]!r} is another")] if others else []


def configure(name: str, channel: AlertsChannel, settings: Settings) -> AlertsConfig:
    from monitors.alerts.source import AlertsConfig  # the status pulls in the engine: at run time only

    return AlertsConfig(name=name, every=channel.every, settings=settings)


def build(config: AlertsConfig, context: ConnectorContext) -> AlertSource:
    from monitors.alerts.source import AlertSource

    return AlertSource(config, context.writer, context.engine_for(config.settings.engine.database))


ALERTS = register_source(SourceType("alerts", AlertsChannel, configure, build))
