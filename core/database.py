"""One place that turns a database URL into a SQLAlchemy engine.

SQLite gets WAL and FULL sync (an ACK means the bytes are on disk, even on power
loss), incremental auto-vacuum on a new file, and a busy timeout, so the journal writer,
the transform worker and the store consumer can share one file. The `var/` folder is created on demand.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic_core import from_json, to_json
from sqlalchemy import BigInteger, DateTime, Dialect, Engine, Integer, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.types import TypeDecorator


def make_engine(url: str, **kwargs: Any) -> Engine:
    # JSON columns (record payloads) through pydantic's serialiser: json.dumps was a tenth
    # of the deliver stage's time. UTF-8 text, Chinese kept as is.
    kwargs.setdefault("json_serializer", _json_text)
    kwargs.setdefault("json_deserializer", from_json)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30}, hide_parameters=True, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # hide_parameters: error texts must not carry patient data from the statement's values.
    return create_engine(url, pool_pre_ping=True, hide_parameters=True, **kwargs)


_made_lock = threading.Lock()
_made: set[tuple[str, str]] = set()  # (database, table) this process already made or checked


def once_per_database(engine: Engine, table: str, make: Callable[[Engine], None]) -> None:
    """Run `make` (create a table, or add what an older version's lacks) once per database and
    process, for tables every `status`, scrape and page view reads. Threads of this process take
    turns; another process doing the same at the same moment makes the first try fail, and the
    second finds its work done."""
    key = (engine.url.render_as_string(hide_password=False), table)
    with _made_lock:
        if key in _made:
            return
        try:
            make(engine)
        except DBAPIError:
            make(engine)
        _made.add(key)


def _json_text(value: Any) -> str:
    return to_json(value).decode("utf-8")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # Takes effect only in a database that has no table yet (a new file): pages freed by the
    # retention pruner can then be given back to the file system (engine/retention.py). An
    # older file keeps its mode until an offline VACUUM (docs/operations.md).
    cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


RowId = BigInteger().with_variant(Integer, "sqlite")
"""Row ids: 64-bit on servers; INTEGER on SQLite, where only that is an autoincrementing rowid."""


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes on every backend: stored as UTC, read back as UTC.

    SQLite has no time zone type and would drop the offset, so comparisons of
    source-event times (newest wins) would go wrong across offsets.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
