"""The audit log: who did what to dead letters, when, and to how many.

Every operator action (replay, reprocess, purge) writes one row, also when it
found nothing to do, so the next shift can see what was tried at 3 a.m. Rows are
never updated or deleted by the engine. The actor is a name (`--as NAME` or the
OS user), never a credential.
"""

from __future__ import annotations

import getpass
import os
from typing import Any

from sqlalchemy import JSON, BigInteger, Column, Engine, Integer, MetaData, String, Table, Text, select

from engine.database import UtcDateTime
from engine.journal import now_utc

metadata = MetaData()

_Id = BigInteger().with_variant(Integer, "sqlite")

audit_log = Table(
    "audit_log",
    metadata,
    Column("id", _Id, primary_key=True, autoincrement=True),
    Column("at", UtcDateTime(), nullable=False, index=True),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("target", Text, nullable=False),  # ids ("12,13") or filters ("channel=lis reason=PID-3")
    Column("count", Integer, nullable=False),
    Column("detail", JSON(none_as_null=True)),
)


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def current_actor(explicit: str | None = None) -> str:
    """`--as NAME` when given, else the OS user, so an entry always names someone."""
    if explicit and explicit.strip():
        return explicit.strip()[:128]
    try:
        return getpass.getuser()[:128]
    except (KeyError, OSError):  # a container user with no passwd entry
        return f"uid:{os.getuid()}" if hasattr(os, "getuid") else "unknown"


def write_audit(
    engine: Engine,
    *,
    actor: str,
    action: str,
    target: str,
    count: int,
    detail: dict[str, Any] | None,
) -> int:
    """Append one entry; returns its id so the CLI can point at it."""
    with engine.begin() as conn:
        result = conn.execute(
            audit_log.insert()
            .values(
                at=now_utc(),
                actor=actor[:128],
                action=action[:32],
                target=target,
                count=count,
                detail=detail,
            )
            .returning(audit_log.c.id)
        )
        return int(result.scalar_one())


def list_audit(engine: Engine, limit: int | None = 50, *, action: str | None = None) -> list[dict[str, Any]]:
    """Newest first."""
    query = select(audit_log).order_by(audit_log.c.id.desc())
    if action:
        query = query.where(audit_log.c.action == action)
    if limit:
        query = query.limit(limit)
    with engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(query)]
