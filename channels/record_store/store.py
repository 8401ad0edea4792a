"""Record store destination: canonical records into SQL tables, idempotently, linked to persons.

Supports SQLite (embedded default) and PostgreSQL. Settings (`routes.yaml`):

    destinations:
      record_store:
        type: record_store
        database: ${MCH_STORE_URL:-}   # empty: the engine database

Every record is upserted by its stable `record_id`, so a re-driven or replayed
message never makes a second row, and an upsert carrying an older source event
than the stored one changes nothing (never older over newer; the journal id
breaks ties).

Persons are found by their identifiers, strongest first: a valid 身份证号, then
the HIS patient id of the sending system, then the MCH handbook number, then the
birth certificate number. A record whose person is not known yet creates the
person, so results that arrive before the registration still link; when one
message shows two known persons to be the same, they are merged. An A40 merge
(`PersonMerge`) moves the retired identifiers and records to the survivor. A
newborn or child record links the child to its mother.

A bundle is stored in one transaction with a few statements for all its envelopes
(`batch.py`), with the result of storing them one by one, in order. The clinical rules
the destination lists under `rules:` then run, in the same transaction, for every person
the bundle touched (`derive.py`): suggested risk gradings and PMTCT cases are stored
beside the records they were made from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from channels.record_store.batch import store_bundle
from channels.record_store.derive import Derivations, derivations_for
from channels.record_store.schema import (
    IDENTIFIER_KINDS,
    ensure_schema,
    identifiers_of,
    metadata,
    person_identifiers,
    person_key_for,
    persons,
    records,
)
from core.errors import PermanentDeliveryError, TransientDeliveryError

__all__ = [
    "IDENTIFIER_KINDS",
    "RecordStore",
    "ensure_schema",
    "identifiers_of",
    "metadata",
    "person_identifiers",
    "person_key_for",
    "persons",
    "records",
]


class RecordStore:
    """Upserts canonical record envelopes; one instance per consumer thread."""

    def __init__(self, engine: Engine, derivations: Derivations | None = None) -> None:
        self.engine = engine
        self.derivations = derivations or Derivations([])

    def reconfigure(self, destination: Any, context: Any) -> None:
        """A reload changed the rule tables: the next bundle runs the new ones."""
        self.derivations = derivations_for(destination, context.settings)

    def health_check(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(select(1))

    def store(self, envelopes: Iterable[dict[str, Any]]) -> None:
        """Commit a batch of envelopes in one transaction; map driver errors at the edge."""
        try:
            bundle = list(envelopes)
            with self.engine.begin() as conn:
                store_bundle(conn, bundle)
                self.derivations.apply(conn, bundle)
        except IntegrityError as exc:
            raise TransientDeliveryError(f"record store conflict, will retry: {exc.orig}") from exc
        except DBAPIError as exc:
            if isinstance(exc, OperationalError) or exc.connection_invalidated:
                raise TransientDeliveryError(f"record store unavailable: {exc.orig}") from exc
            raise PermanentDeliveryError(f"record store error: {exc.orig}") from exc
