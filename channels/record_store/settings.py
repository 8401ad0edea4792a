"""The `record_store` destination's settings."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from core.settings import Destination, EngineSettings, url_check

__all__ = ["RecordStoreDestination"]


class RecordStoreDestination(Destination):
    """The canonical MCH record store (SQL)."""

    type: Literal["record_store"] = Field(description="Destination type.")
    partitions: int = Field(
        default=1,
        ge=1,
        le=64,
        description="Queues this destination is split into, by person (one person's records stay "
        "in order in one queue); on RabbitMQ each has one active consumer, so engines can take over "
        "from each other.",
    )
    database: Annotated[str, url_check("postgresql+psycopg://user@host/db", empty_ok=True)] = Field(
        default="",
        description="SQLAlchemy URL of the record store; empty or absent means the engine "
        "database (filled in on load).",
    )

    @property
    def database_url(self) -> str | None:
        return self.database

    def fill_defaults(self, engine: EngineSettings) -> None:
        """An empty URL means the engine database."""
        if not self.database:
            self.database = engine.database
