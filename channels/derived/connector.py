"""Registers the `derived` channel type: a record store's derived records, relayed."""

from __future__ import annotations

from channels.derived.settings import DerivedChannel
from channels.derived.source import DerivedConfig, DerivedSource
from core.connectors import ConnectorContext, SourceType, register_source
from core.settings import Settings


def configure(name: str, channel: DerivedChannel, settings: Settings) -> DerivedConfig:
    """The relay's settings; the outbox is in the database of the store it names."""
    store = settings.destinations[channel.store]
    return DerivedConfig(
        name=name,
        store=channel.store,
        database=store.database_url or settings.engine.database,
        every=channel.every,
        batch=channel.batch,
    )


def build(config: DerivedConfig, context: ConnectorContext) -> DerivedSource:
    return DerivedSource(config, context.writer, context.engine_for(config.database))


DERIVED = register_source(SourceType("derived", DerivedChannel, configure, build))
