"""What every page handler shares: the settings, the journal and store databases, and who
is acting, for the audit log.

The databases are opened without a pool (a connection per page, closed with it): the HTTP
app has no shutdown hook to close a pool with, and a dashboard's few queries a page do not
need one (`collect` opens and closes its own too)."""

from __future__ import annotations

import threading
from datetime import tzinfo

from sqlalchemy import Engine
from sqlalchemy.pool import NullPool
from starlette.requests import Request

from core.database import make_engine
from core.settings import Settings
from deadletter import audit
from deadletter import store as dead_letter_store
from deadletter.audit import Actor
from engine import journal
from monitors.web.access import User


class Site:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()
        self._ready = False

    @property
    def tz(self) -> tzinfo:
        return self.settings.engine.tzinfo

    def engine_for(self, url: str) -> Engine:
        with self._lock:
            if url not in self._engines:
                self._engines[url] = make_engine(url, poolclass=NullPool)
            return self._engines[url]

    @property
    def journal(self) -> Engine:
        """The engine database, its tables made on first use (the pages may be read before
        the engine ever ran)."""
        db = self.engine_for(self.settings.engine.database)
        if not self._ready:
            journal.ensure_schema(db)
            dead_letter_store.ensure_schema(db)
            audit.ensure_schema(db)
            self._ready = True
        return db


def actor(request: Request, user: User) -> Actor:
    """The signed-in user, and where the request came from in place of the OS account the
    CLI records (the audit's "from where")."""
    host = request.client.host if request.client else "-"
    return Actor(user.name[:128], f"web:{host}"[:128])
