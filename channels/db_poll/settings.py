"""The `db_poll` channel's settings in routes.yaml (validated by the connector registry)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator
from sqlalchemy.engine import make_url

from channels.db_poll.sql import dialect_named
from core.settings import Channel, Duration, PositiveDuration

ODBC_PREFIX = "odbc:"

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")
_COLUMN = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


class DbPollChannel(Channel):
    """A HIS database view or query, polled every `every` seconds (docs/connectors.md)."""

    type: Literal["db_poll"] = Field(description="Channel type.")
    url: str = Field(
        description="SQLAlchemy URL of the HIS database (mssql+pyodbc://…, postgresql+psycopg://…, "
        "mysql+pymysql://…, sqlite:///…), or `odbc:` followed by an ODBC connection string "
        "(`odbc:DRIVER={PostgreSQL Unicode};SERVER=…`) read through pyodbc and unixODBC. Empty: the "
        "channel is disabled (not polled), so `${MCH_HIS_DB_URL:-}` turns it on by the environment.",
    )
    view: str = Field(
        default="",
        description="View (or table) to read, e.g. v_child_exam or his.v_child_exam; or give `query`.",
    )
    query: str = Field(
        default="",
        description="A SELECT whose rows are read instead of a view (no ORDER BY, no bound "
        "parameters): the engine wraps it with the cursor condition, the order and the limit.",
    )
    watermark: str = Field(
        description="Column that grows when a row is written (an update time, a sequence, or a "
        "SQL Server rowversion with `rowversion: true`); rows are read in its order.",
    )
    key: str = Field(
        description="Column that identifies a row (unique together with the watermark); orders rows "
        "with equal watermarks and names the row in the journal (its control id).",
    )
    every: PositiveDuration = Field(default=30.0, description="Time between two polls, e.g. 30s or 1m.")
    batch: int = Field(
        default=500, gt=0, le=10_000, description="At most this many rows per query and journal commit."
    )
    look_back: Duration = Field(
        default=0.0,
        description="Also re-read rows whose watermark is at most this much older than the cursor, "
        "for rows a HIS transaction commits late with an older time; rows already journaled are "
        "recognised by content and skipped. 0: no look-back. Time watermarks only.",
    )
    rowversion: bool = Field(
        default=False,
        description="SQL Server only: `watermark` is a rowversion column, read up to "
        "MIN_ACTIVE_ROWVERSION() so rows of transactions still open are never passed over.",
    )
    dialect: Literal["", "postgresql", "mysql", "mssql", "sqlite"] = Field(
        default="",
        description="SQL flavour of an `odbc:` connection string; empty: guessed from its DRIVER name.",
    )
    timeout: PositiveDuration = Field(
        default=15.0, description="Seconds to wait for the HIS database to answer a connection."
    )

    @field_validator("url")
    @classmethod
    def _known_database(cls, url: str) -> str:
        """A URL whose database SQLAlchemy knows, an `odbc:` string, or empty (off); the value
        itself is never echoed (it may hold a password)."""
        url = url.strip()
        if not url or url.startswith(ODBC_PREFIX):
            return url
        try:
            dialect_named(make_url(url).get_backend_name())
        except Exception:
            raise ValueError(
                "expected a SQLAlchemy URL like mssql+pyodbc://user@host/db?driver=FreeTDS, "
                "or odbc: followed by an ODBC connection string"
            ) from None
        return url

    @model_validator(mode="after")
    def _source_and_columns(self) -> DbPollChannel:
        if bool(self.view) == bool(self.query.strip()):
            raise ValueError("give exactly one of `view` or `query`")
        if self.view and not _IDENTIFIER.fullmatch(self.view):
            raise ValueError("`view` must be a name like v_child_exam or schema.v_child_exam")
        for label, column in (("watermark", self.watermark), ("key", self.key)):
            if not _COLUMN.fullmatch(column):
                raise ValueError(f"`{label}` must be a column name (letters, digits, _)")
        if self.rowversion and self.look_back:
            raise ValueError("`look_back` is for time watermarks; a rowversion needs none")
        return self

    @property
    def enabled(self) -> bool:
        """An empty URL (the environment variable is not set) turns the channel off."""
        return bool(self.url.strip())

    @property
    def carries_rows(self) -> bool:
        """Its messages are database rows (JSON), which the transform stage maps as `input: row`."""
        return True

    @property
    def source_name(self) -> str:
        """What the rows come from, for the journal's sender column."""
        return self.view or "query"
