"""The `record_store` destination's settings."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field

from core.settings import Destination, EngineSettings, url_check
from transforms.rules.derivers import load_deriver

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

    rules: list[str] = Field(
        default_factory=list,
        description="Rule tables (paths relative to routes.yaml) run over each person's records "
        "as they are stored: suggested five-colour risk grading, PMTCT follow-up. See docs/rules.md.",
    )

    publish_derived: bool = Field(
        default=False,
        description="Also write every derived record that is new or changed to the table "
        "`derived_outbox`, in the same transaction, for a `derived` channel to route onwards "
        "(staff alerts, the PMTCT officer). Off: derived records stay in the store only.",
    )

    @property
    def database_url(self) -> str | None:
        return self.database

    def config_files(self) -> list[tuple[str, int, str]]:
        return [("rules", i, path) for i, path in enumerate(self.rules)]

    def check_file(self, path: Path) -> None:
        load_deriver(path)

    def fill_defaults(self, engine: EngineSettings) -> None:
        """An empty URL means the engine database."""
        if not self.database:
            self.database = engine.database
