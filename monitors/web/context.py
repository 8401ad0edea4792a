"""What the web parts share: the settings, one database engine for the journal database
(users, sessions, the audit log, the messages), and the session lifetimes."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import Engine

from channels.record_store import store as record_store
from core.database import make_engine
from core.settings import Settings
from deadletter import audit
from deadletter import store as dead_letters
from engine import journal
from engine.listing_commands import store_urls
from monitors.web import sessions, users


@dataclass
class WebContext:
    settings: Settings
    lifetimes: sessions.Lifetimes
    _engine: Engine | None = None
    _stores: dict[str, Engine] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def engine(self) -> Engine:
        """Opened, and its tables made, at the first request that needs it: the app is built
        before the database has to answer, so `/healthz` works without it."""
        with self._lock:
            if self._engine is None:
                engine = make_engine(self.settings.engine.database)
                journal.ensure_schema(engine)
                dead_letters.ensure_schema(engine)
                audit.ensure_schema(engine)
                users.ensure_schema(engine)
                sessions.ensure_schema(engine)
                self._engine = engine
            return self._engine

    def store_engines(self) -> list[Engine]:
        """One engine per record store database (the journal's own when a store has none)."""
        journal_engine = self.engine
        with self._lock:
            for url, _setting in store_urls(self.settings):
                if url not in self._stores:
                    if url == self.settings.engine.database:
                        self._stores[url] = journal_engine
                    else:
                        self._stores[url] = make_engine(url)
                    record_store.ensure_schema(self._stores[url])
            return list(self._stores.values())


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
