"""Registers the `record_store` destination type: the canonical MCH record store (SQL)."""

from __future__ import annotations

from channels.record_store.derive import derivations_for
from channels.record_store.settings import RecordStoreDestination
from channels.record_store.store import RecordStore, ensure_schema
from core.connectors import ConnectorContext, DestinationType, register_destination


def _database(destination: RecordStoreDestination, context: ConnectorContext) -> str:
    return destination.database or context.settings.engine.database


def prepare(name: str, destination: RecordStoreDestination, context: ConnectorContext) -> None:
    """Create the store's tables before any process works."""
    ensure_schema(context.engine_for(_database(destination, context)))


def build(name: str, destination: RecordStoreDestination, context: ConnectorContext) -> RecordStore:
    prepare(name, destination, context)
    derivations = derivations_for(destination, context.settings)
    return RecordStore(context.engine_for(_database(destination, context)), derivations)


RECORD_STORE = register_destination(DestinationType("record_store", RecordStoreDestination, build, prepare))
