"""The `derived` channel's settings in routes.yaml (validated by the connector registry)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from core.settings import Channel, Name, PositiveDuration
from transforms.rules.derivers import DERIVED_TYPES

STORE_TYPE = "record_store"


class DerivedChannel(Channel):
    """Derived records (suggested gradings, PMTCT cases) of a record store, relayed into the
    journal so routes can send them on (docs/connectors.md)."""

    type: Literal["derived"] = Field(description="Channel type.")
    store: Name = Field(
        description="The `record_store` destination whose derived records this channel relays; "
        "it must say `publish_derived: true`. Its database holds the outbox read here.",
    )
    every: PositiveDuration = Field(default=1.0, description="Time between two looks at the outbox, e.g. 1s.")
    batch: int = Field(
        default=200, gt=0, le=10_000, description="At most this many outbox rows per journal commit."
    )

    @property
    def carries_records(self) -> bool:
        """Its messages are canonical records: routed by record type, with or without a mapping."""
        return True

    @property
    def record_types(self) -> tuple[str, ...]:
        return DERIVED_TYPES

    def problems_with(self, settings: Any) -> list[tuple[str, str]]:
        """`store` names a record store that publishes its derived records."""
        destination = settings.destinations.get(self.store)
        if destination is None:
            known = ", ".join(sorted(settings.destinations)) or "none"
            return [("store", f"unknown destination {self.store!r} (known: {known})")]
        if destination.type != STORE_TYPE:
            return [("store", f"{self.store!r} is a {destination.type} destination, not a record_store")]
        if not getattr(destination, "publish_derived", False):
            return [("store", f"record store {self.store!r} does not say `publish_derived: true`")]
        return []
