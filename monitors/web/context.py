"""What the web parts share: the settings, the journal database (users, sessions, the audit
log, the messages, the dead letters), the record store databases, the session lifetimes,
and who is acting, for the audit log.

The databases are opened without a pool (a connection per request, closed with it): the
HTTP app has no shutdown hook to close a pool with, and a dashboard's few queries a page
do not need one (`collect` opens and closes its own too).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta, tzinfo
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import NullPool
from starlette.requests import HTTPConnection

from channels.record_store import queries as record_queries
from channels.record_store import store as record_store
from core.database import make_engine
from core.settings import Settings
from deadletter import audit
from deadletter import store as dead_letters
from deadletter.audit import Actor
from engine import journal
from engine.listing_commands import store_urls
from monitors.web import sessions, users
from monitors.web.access import User


@dataclass
class WebContext:
    settings: Settings
    lifetimes: sessions.Lifetimes
    _engines: dict[str, Engine] = field(default_factory=dict)
    _ready: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def tz(self) -> tzinfo:
        return self.settings.engine.tzinfo

    @property
    def engine(self) -> Engine:
        """The journal database, its tables made at the first request that needs it: the app
        is built before the database has to answer, so `/healthz` works without it, and the
        pages may be read before the engine ever ran."""
        url = self.settings.engine.database
        db = self.engine_for(url)
        with self._lock:
            if url not in self._ready:
                journal.ensure_schema(db)
                dead_letters.ensure_schema(db)
                audit.ensure_schema(db)
                users.ensure_schema(db)
                sessions.ensure_schema(db)
                self._ready.add(url)
        return db

    def engine_for(self, url: str) -> Engine:
        """One engine per database URL, the journal's and every record store's."""
        with self._lock:
            if url not in self._engines:
                self._engines[url] = make_engine(url, poolclass=NullPool)
            return self._engines[url]

    def store_engines(self) -> list[Engine]:
        """One engine per record store database (the journal's own when a store has none),
        its tables made."""
        _ = self.engine  # the journal's tables first, when a store shares its database
        out = []
        for url, _setting in store_urls(self.settings):
            db = self.engine_for(url)
            with self._lock:
                if f"store:{url}" not in self._ready:
                    record_store.ensure_schema(db)
                    self._ready.add(f"store:{url}")
            out.append(db)
        return out

    def records_of(self, journal_id: int) -> list[dict[str, Any]]:
        """The records (and the person) a journaled message became, in every record store."""
        return [r for db in self.store_engines() for r in record_queries.records_of_message(db, journal_id)]


def source_of(conn: HTTPConnection) -> str:
    """Where a request came from, for the audit log: `web:ADDRESS`."""
    return f"web:{conn.client.host}" if conn.client else "web:unknown"


def actor(conn: HTTPConnection, user: User) -> Actor:
    """The signed-in user for the audit log: name, role, and where the request came from,
    beside the OS account the engine runs as."""
    return Actor(user.name, audit.os_user(), role=user.role.value, source=source_of(conn))


_contexts: dict[int, tuple[Settings, WebContext]] = {}


def context_for(settings: Settings) -> WebContext:
    """One context per settings object, so the routes and the middleware share it."""
    known = _contexts.get(id(settings))
    if known is not None and known[0] is settings:
        return known[1]
    http = settings.engine.http
    lifetimes = sessions.Lifetimes(
        idle=timedelta(seconds=http.session_idle) if http else sessions.IDLE,
        absolute=timedelta(seconds=http.session_max) if http else sessions.ABSOLUTE,
    )
    made = WebContext(settings, lifetimes)
    _contexts[id(settings)] = (settings, made)
    return made
