"""Server-side dashboard sessions (table `web_sessions`).

The browser holds only a random id (HttpOnly, SameSite=Strict cookie); the table keeps
its SHA-256, so a copy of the database opens no session. A session ends after
`idle` without a request (default 30 minutes), `absolute` after login whatever happens
(default 12 hours), at logout, or when its user is disabled. Each carries its own CSRF
token (synchronizer token), sent back by every form and by the JSON API's
`X-CSRF-Token` header.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Engine, MetaData, String, Table, delete, select, update

from core.clock import now_utc
from core.database import UtcDateTime

metadata = MetaData()

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("user_name", String(64), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("source", String(128), nullable=False),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("last_seen_at", UtcDateTime(), nullable=False),
)

COOKIE = "mch_session"
IDLE = timedelta(minutes=30)
ABSOLUTE = timedelta(hours=12)
# A request within this long of the last one does not rewrite `last_seen_at`.
_TOUCH_EVERY = timedelta(seconds=15)


@dataclass(frozen=True, slots=True)
class Session:
    id_hash: str
    user_name: str
    csrf: str


@dataclass(frozen=True, slots=True)
class Lifetimes:
    idle: timedelta = IDLE
    absolute: timedelta = ABSOLUTE


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def open_session(engine: Engine, user_name: str, source: str) -> tuple[str, Session]:
    """A new session for a user who just logged in: (the cookie value, the session)."""
    sid = secrets.token_urlsafe(32)
    session = Session(_hash(sid), user_name, secrets.token_urlsafe(32))
    now = now_utc()
    with engine.begin() as conn:
        conn.execute(
            web_sessions.insert().values(
                id_hash=session.id_hash,
                user_name=user_name,
                csrf=session.csrf,
                source=source[:128],
                created_at=now,
                last_seen_at=now,
            )
        )
    return sid, session


def find_session(engine: Engine, sid: str, lifetimes: Lifetimes) -> Session | None:
    """The live session of this cookie value, its idle clock restarted; None when it has expired."""
    if not sid or len(sid) > 128:
        return None
    c = web_sessions.c
    key = _hash(sid)
    now = now_utc()
    with engine.connect() as conn:
        row = conn.execute(
            select(c.user_name, c.csrf, c.created_at, c.last_seen_at).where(c.id_hash == key)
        ).first()
    if row is None:
        return None
    if _expired(row.created_at, row.last_seen_at, now, lifetimes):
        close_session(engine, sid)
        return None
    if now - row.last_seen_at >= min(_TOUCH_EVERY, lifetimes.idle / 4):
        with engine.begin() as conn:
            conn.execute(update(web_sessions).where(c.id_hash == key).values(last_seen_at=now))
    return Session(key, row.user_name, row.csrf)


def close_session(engine: Engine, sid: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.id_hash == _hash(sid)))


def close_user_sessions(engine: Engine, user_name: str) -> None:
    with engine.begin() as conn:
        conn.execute(delete(web_sessions).where(web_sessions.c.user_name == user_name))


def _expired(created: datetime, seen: datetime, now: datetime, lifetimes: Lifetimes) -> bool:
    return now - seen > lifetimes.idle or now - created > lifetimes.absolute


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode("utf-8")).hexdigest()
