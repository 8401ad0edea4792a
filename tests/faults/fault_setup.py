"""One isolated configuration per fault test (its own PostgreSQL schema or SQLite file, its own
queue prefix, cleaned up afterwards) and the HL7 messages the tests send."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url

from core.database import make_engine
from engine_process import EngineProcess, delete_broker_objects, wait_for
from support import AMQP_URL, pg_schema, require_service, scalar, write_routes
from support import adt as adt  # the message builders the fault tests import from here
from support import oru as oru

EMBEDDED = "embedded"  # SQLite + memory://, the laptop default
RABBITMQ_PG = "rabbitmq+postgresql"


@dataclass
class Setup:
    """One test's engine configuration, and handles on its databases that reach them directly
    (never through the test's proxy), so a test can look while the engine cannot."""

    kind: str
    routes: Path
    journal_url: str
    store_url: str
    prefix: str
    journal: Engine
    store: Engine


def retry_yaml(tiers: list[str], max_attempts: int) -> str:
    return f"retry:\n  tiers: [{', '.join(tiers)}]\n  max_attempts: {max_attempts}\n"


def through_port(url: str, port: int) -> str:
    """The same database URL, reached through another local port (the proxy)."""
    return make_url(url).set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


@contextmanager
def engine_setup(
    kind: str,
    directory: Path,
    *,
    retry: str = "",
    store_port: int | None = None,
    routes_edit: dict[str, str] | None = None,
) -> Iterator[Setup]:
    """A routes.yaml for `kind`, its databases, and clean-up of schema and broker objects.

    `store_port`: the record store reaches PostgreSQL through this local port (a proxy);
    the journal stays direct. `routes_edit`: text replacements applied to routes.yaml.
    """
    prefix = f"fault{uuid.uuid4().hex[:10]}"
    if kind == EMBEDDED:
        url = f"sqlite:///{directory}/engine.db"
        routes = write_routes(directory, database=url, queue_prefix=prefix, extra=retry)
        yield from _with_engines(kind, routes, url, url, prefix, routes_edit)
        return
    require_service("127.0.0.1", 5672, "RabbitMQ")
    with pg_schema() as url:
        routes = write_routes(directory, database=url, broker=AMQP_URL, queue_prefix=prefix, extra=retry)
        if store_port:
            proxied = through_port(url, store_port)
            routes_edit = {
                **(routes_edit or {}),
                "record_store: {type: record_store}": f"record_store: {{type: record_store, database: '{proxied}'}}",
            }
        try:
            yield from _with_engines(kind, routes, url, url, prefix, routes_edit)
        finally:
            tiers = [f"{prefix}.record_store.retry.{n}s" for n in range(1, 11)]
            delete_broker_objects(prefix, ["record_store"], known=tiers)


def _with_engines(
    kind: str, routes: Path, journal_url: str, store_url: str, prefix: str, edit: dict[str, str] | None
) -> Iterator[Setup]:
    if edit:
        content = routes.read_text(encoding="utf-8")
        for old, new in edit.items():
            assert old in content, f"{old!r} not in routes.yaml"
            content = content.replace(old, new)
        routes.write_text(content, encoding="utf-8")
    journal, store = make_engine(journal_url), make_engine(store_url)
    try:
        yield Setup(kind, routes, journal_url, store_url, prefix, journal, store)
    finally:
        journal.dispose()
        store.dispose()


def delivery_statuses(setup: Setup) -> dict[str, int]:
    """journal_deliveries by status, e.g. {"delivered": 98, "retrying": 2}."""
    return dict(rows(setup.journal, "select status, count(*) from journal_deliveries group by status"))


def wait_delivered(setup: Setup, engine: EngineProcess, count: int, timeout: float, what: str) -> None:
    """Wait until `count` deliveries are delivered; say which statuses were seen if not."""
    wait_for(
        lambda: (
            scalar(setup.journal, "select count(*) from journal_deliveries where status = 'delivered'")
            >= count
        ),
        timeout,
        what,
        engine,
        describe=lambda: delivery_statuses(setup),
    )


def rows(engine: Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(text(sql), params))


def execute(engine: Engine, *statements: str) -> None:
    with engine.begin() as conn:
        for sql in statements:
            conn.execute(text(sql))


# --------------------------------------------------------------------------- messages


def lab_record_id(filler: str) -> str:
    return f"lab:LIS:10:{filler}"
