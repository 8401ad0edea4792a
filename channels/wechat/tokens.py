"""The access token, kept in the engine database and shared by every engine process.

WeChat's `stable_token` gives the same token to every caller while it is valid, but a forced
refresh is limited (20 a day, 30 s apart), so the processes of one engine must not each ask.
Table `wechat_tokens` (appid, token, expires_at) holds the current token; a process that
finds it missing or about to expire takes the row lock (PostgreSQL `SELECT … FOR UPDATE`,
SQLite `BEGIN IMMEDIATE`), reads again, and fetches only if no other process did meanwhile.
The HTTP fetch happens under the lock, so the others wait for its result instead of fetching.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Column, Connection, Engine, MetaData, String, Table, select, update

from core.clock import now_utc
from core.database import UtcDateTime
from core.upsert import insert_for

__all__ = ["TOKENS", "Fetch", "TokenStore"]

metadata = MetaData()
TOKENS = Table(
    "wechat_tokens",
    metadata,
    Column("appid", String(64), primary_key=True),
    Column("token", String(1024), nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
)

Fetch = Callable[[bool], tuple[str, float]]
"""fetch(force_refresh) -> (token, seconds it stays valid): the HTTP call to stable_token."""

MARGIN = timedelta(seconds=300)  # refresh this long before WeChat's expiry
_NEVER = datetime(1970, 1, 1, tzinfo=UTC)


def _row(appid: str) -> Any:
    return select(TOKENS.c.token, TOKENS.c.expires_at).where(TOKENS.c.appid == appid)


class TokenStore:
    def __init__(self, engine: Engine, *, now: Callable[[], datetime] = now_utc) -> None:
        self.engine = engine
        self._now = now

    def prepare(self) -> None:
        metadata.create_all(self.engine)

    def current(self, appid: str, fetch: Fetch) -> str:
        """A valid token: the stored one, or one fetched under the lock if none is stored."""
        with self.engine.connect() as conn:
            row = conn.execute(_row(appid)).first()
        if row is not None and self._fresh(row.expires_at):
            return str(row.token)
        return self._locked(
            appid, lambda token, expires_at: token if self._fresh(expires_at) else None, fetch, False
        )

    def refresh(self, appid: str, rejected: str, fetch: Fetch) -> str:
        """WeChat refused `rejected` (40001/42001): a new token with force_refresh, unless another
        process already replaced it, in which case that one."""
        return self._locked(
            appid,
            lambda token, expires_at: token if token != rejected and self._fresh(expires_at) else None,
            fetch,
            True,
        )

    def _fresh(self, expires_at: datetime) -> bool:
        return expires_at - MARGIN > self._now()

    def _locked(
        self, appid: str, usable: Callable[[str, datetime], str | None], fetch: Fetch, force: bool
    ) -> str:
        self._ensure_row(appid)
        with self.engine.connect() as conn:
            self._lock(conn)
            query = _row(appid)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update()
            row = conn.execute(query).one()
            kept = usable(str(row.token), row.expires_at)
            if kept is not None:
                conn.rollback()
                return kept
            try:
                token, lifetime = fetch(force)
            except BaseException:
                conn.rollback()
                raise
            expires_at = self._now() + timedelta(seconds=lifetime)
            stored = update(TOKENS).where(TOKENS.c.appid == appid)
            conn.execute(stored.values(token=token, expires_at=expires_at))
            conn.commit()
            return token

    def _ensure_row(self, appid: str) -> None:
        """A placeholder row (already expired), so there is always a row to lock."""
        with self.engine.begin() as conn:
            conn.execute(
                insert_for(conn, TOKENS).on_conflict_do_nothing(),
                {"appid": appid, "token": "", "expires_at": _NEVER},
            )

    @staticmethod
    def _lock(conn: Connection) -> None:
        if conn.dialect.name == "sqlite":
            # The write lock now, not at the UPDATE: a second process waits here (busy_timeout)
            # and then reads the token the first one stored.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
