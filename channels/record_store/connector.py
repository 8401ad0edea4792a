"""Registers the `record_store` destination type: the canonical MCH record store (SQL)."""

from __future__ import annotations

from channels.record_store.derive import Derivations
from channels.record_store.settings import RecordStoreDestination
from channels.record_store.store import RecordStore, ensure_schema
from core.connectors import ConnectorContext, DestinationType, register_destination
from transforms.rules.derivers import load_deriver


def _database(destination: RecordStoreDestination, context: ConnectorContext) -> str:
    return destination.database or context.settings.engine.database


def prepare(name: str, destination: RecordStoreDestination, context: ConnectorContext) -> None:
    """Create the store's tables before any process works."""
    ensure_schema(context.engine_for(_database(destination, context)))


def build(name: str, destination: RecordStoreDestination, context: ConnectorContext) -> RecordStore:
    prepare(name, destination, context)
    settings = context.settings
    derivers = [load_deriver(destination.file_path(p, settings)) for p in destination.rules]
    return RecordStore(context.engine_for(_database(destination, context)), Derivations(derivers))


RECORD_STORE = register_destination(DestinationType("record_store", RecordStoreDestination, build, prepare))
