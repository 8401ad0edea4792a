"""The audit log: who did what, when, from where, to which ids, and how it ended.

One table for every action by anyone: the dead-letter actions of the CLI and of the web,
`reload`, and the dashboard's own events (logins, failed logins, lockouts, logouts, user
changes). Each entry says where it came from (`source`: `cli:OSUSER` for a command, the
remote address for the web) and, for the web, the signed-in user's `role`.

Every operator action (replay, reprocess, purge) writes its entry BEFORE it touches
anything, naming what it is about to do (outcome `started`), and completes that
same entry once when it ends (`done`, `failed` when some ids failed, `aborted` when
it stopped part-way, e.g. Ctrl+C or a database error). An action that sent records
for delivery ends `queued`: what became of them is known only once they are delivered
or dead-lettered again, and a command that waited for that (`--wait`) settles the
entry once more, to `done` or `failed`. An entry still `started`
therefore means the action was cut off (kill -9, power loss): look at the ids it
names. Nothing else changes or deletes an entry. Each entry names two people: the
`actor` the operator claimed with `--as NAME` (the OS user when not given), and the
`os_user` the command really ran as; never a credential. An older `audit_log`
table gets the new columns when the engine or a `deadletter` command starts.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    func,
    inspect,
    select,
    text,
    update,
)

from core.clock import now_utc
from core.database import RowId, UtcDateTime

metadata = MetaData()


# Outcomes of an entry.
STARTED = "started"
DONE = "done"
FAILED = "failed"
ABORTED = "aborted"
QUEUED = "queued"  # records sent for delivery, their outcome not (yet) awaited

# Every action an entry can name; `deadletter audit` shows each through its `action_` text.
ACTIONS = (
    "show",
    "replay",
    "reprocess",
    "reprocess_preview",
    "purge",
    "reload",
    "wechat_bind_import",
    # The dashboard and its users (monitors/web/).
    "login",
    "login_failed",
    "lockout",
    "logout",
    "user_add",
    "user_disable",
    "user_passwd",
    "user_token",
    "message_show",
    # Channels stopped, started, paused by an operator (engine/channel_control.py).
    "channel_stop",
    "channel_start",
    "channel_pause",
    # Backups of the embedded databases and their restore (engine/backup_command.py).
    "backup",
    "restore",
    # A retention pass run by hand (engine/retention_command.py).
    "retention",
)

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", RowId, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False, index=True),
    Column("actor", String(128), nullable=False),  # the name claimed with --as, else the OS user
    Column("action", String(32), nullable=False),
    Column("target", Text, nullable=False),  # ids ("12,13") or filters ("channel=lis reason=PID-3")
    Column("count", Integer, nullable=False),
    Column("detail", JSON(none_as_null=True)),
    # Added after the first release: NULL in entries written before.
    Column("os_user", String(128)),
    Column("outcome", String(16)),
    Column("finished_at", UtcDateTime()),
    # Added with the dashboard: the signed-in user's role (NULL from the CLI) and where the
    # action came from (`cli:OSUSER`, or the web client's address).
    Column("role", String(16)),
    Column("source", String(128), index=True),
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the name the operator gave (`--as`) and the account the command runs as."""

    name: str
    os_user: str
    role: str | None = None
    source: str | None = None
    """Where the action came from; None means a command run as `os_user` (`cli:OS_USER`)."""

    @property
    def origin(self) -> str:
        return (self.source or f"cli:{self.os_user}")[:128]

    @classmethod
    def of(cls, who: str | Actor) -> Actor:
        """A bare name (a caller without `--as` handling) runs as this process's OS user."""
        return who if isinstance(who, Actor) else cls(who.strip()[:128], os_user())

    def __str__(self) -> str:
        return self.name if self.name == self.os_user else f"{self.name} ({self.os_user})"


def ensure_schema(engine: Engine) -> None:
    """Create the table, or add the columns an older table lacks (nullable, so old rows stay)."""
    metadata.create_all(engine)
    present = {c["name"] for c in inspect(engine).get_columns(audit_log.name)}
    missing = [c for c in audit_log.columns if c.name not in present]
    if not missing:
        return
    with engine.begin() as conn:
        for col in missing:
            kind = col.type.compile(dialect=conn.dialect)
            conn.execute(text(f"ALTER TABLE {audit_log.name} ADD COLUMN {col.name} {kind}"))


def os_user() -> str:
    """The login this process runs as."""
    try:
        return getpass.getuser()[:128]
    except (KeyError, OSError):  # a container user with no passwd entry
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def current_actor(explicit: str | None = None) -> Actor:
    """`--as NAME` when given, else the OS user; the OS user is kept beside it either way."""
    account = os_user()
    name = explicit.strip()[:128] if explicit and explicit.strip() else account
    return Actor(name, account)


def begin_audit(engine: Engine, *, actor: Actor, action: str, target: str, detail: dict[str, Any]) -> int:
    """Write the entry for an action about to start, committed before it acts; returns its id."""
    return _insert(engine, actor, action, target, 0, detail, STARTED)


def finish_audit(engine: Engine, entry_id: int, *, outcome: str, count: int, detail: dict[str, Any]) -> None:
    """Complete an entry once with how its action ended; an entry already completed stays as it is."""
    c = audit_log.c
    with engine.begin() as conn:
        conn.execute(
            update(audit_log)
            .where((c.id == entry_id) & (c.outcome == STARTED))
            .values(outcome=outcome, count=count, detail=detail, finished_at=now_utc())
        )


def settle_audit(
    engine: Engine, entry_id: int, *, outcome: str, delivered: list[int], failed: list[int]
) -> None:
    """A `queued` entry gets what became of its deliveries (`done` or `failed`), once, from the
    command that waited for them; the ids delivered and failed again join its detail."""
    c = audit_log.c
    with engine.begin() as conn:
        detail = conn.execute(select(c.detail).where((c.id == entry_id) & (c.outcome == QUEUED))).first()
        if detail is None:
            return
        settled = {**(detail[0] or {}), "delivered": delivered, "failed": failed}
        conn.execute(
            update(audit_log)
            .where((c.id == entry_id) & (c.outcome == QUEUED))
            .values(outcome=outcome, detail=settled, finished_at=now_utc())
        )


def write_audit(
    engine: Engine,
    *,
    actor: Actor,
    action: str,
    target: str,
    count: int,
    detail: dict[str, Any] | None,
) -> int:
    """Append one finished entry, for an action done in one step (`show`); returns its id."""
    return _insert(engine, actor, action, target, count, detail, DONE)


def _insert(
    engine: Engine,
    actor: Actor,
    action: str,
    target: str,
    count: int,
    detail: dict[str, Any] | None,
    outcome: str,
) -> int:
    if action not in ACTIONS:
        raise ValueError(f"unknown audit action {action!r}; add it to ACTIONS and its action_ text")
    now = now_utc()
    with engine.begin() as conn:
        result = conn.execute(
            audit_log.insert()
            .values(
                at=now,
                actor=actor.name[:128],
                os_user=actor.os_user[:128],
                role=actor.role,
                source=actor.origin,
                action=action[:32],
                target=target,
                count=count,
                detail=detail,
                outcome=outcome,
                finished_at=now if outcome != STARTED else None,
            )
            .returning(audit_log.c.id)
        )
        return int(result.scalar_one())


def list_audit(
    engine: Engine,
    limit: int | None = 50,
    *,
    action: str | None = None,
    actor: str | None = None,
    source: str | None = None,
    since: datetime | None = None,
) -> list[dict[str, Any]]:
    """Newest first."""
    c = audit_log.c
    query = select(audit_log).order_by(c.id.desc())
    if action:
        query = query.where(c.action == action)
    if actor:
        query = query.where(c.actor == actor)
    if source:
        query = query.where(c.source == source)
    if since:
        query = query.where(c.at >= since)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]


def count_audit(
    engine: Engine, action: str, since: datetime, *, actor: str | None = None, source: str | None = None
) -> int:
    """How many `action` entries since `since`, for one actor or one source (login throttling)."""
    c = audit_log.c
    query = select(func.count()).select_from(audit_log).where((c.action == action) & (c.at >= since))
    if actor is not None:
        query = query.where(c.actor == actor)
    if source is not None:
        query = query.where(c.source == source)
    with engine.connect() as conn:
        return int(conn.execute(query).scalar() or 0)
