"""The dashboard's local users: a name, a role, an argon2id password hash, an API token.

Passwords are hashed with argon2id (argon2-cffi's defaults, which follow RFC 9106); a
hash made with older parameters is replaced by a fresh one at the next good login. A
login for a name that does not exist still verifies a password against a dummy hash,
so a refusal takes as long whether the user exists or not, and says the same.

Lockout: 5 failed logins for one name within 15 minutes refuse that name for the rest
of the window, and 20 from one address refuse that address; both are counted from the
audit log (`login_failed` entries), so every process and every restart agrees on them.

An API token (`mch-engine users token NAME`) lets a script call /api/ without a session:
one per user, shown once, stored only as its SHA-256, replaced when a new one is made.
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import Boolean, Column, Engine, MetaData, String, Table, select, update

from core.clock import now_utc
from core.database import UtcDateTime
from deadletter import audit
from deadletter.audit import Actor
from monitors.web.access import Role, User

log = structlog.get_logger("monitors.web.users")
metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("password_hash", String(256), nullable=False),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("token_hash", String(64), unique=True),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
)

LOCK_FAILURES = 5
LOCK_ADDRESS_FAILURES = 20
LOCK_WINDOW = timedelta(minutes=15)
MIN_PASSWORD = 10

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """What an unknown name's password is checked against, so a refusal takes as long either
    way; made at the first login, not at import (every CLI command imports this package)."""
    return _hasher.hash(secrets.token_hex(16))


class UserError(ValueError):
    """A user change that cannot be made; `code` names the operator text."""

    def __init__(self, code: str, **values: object) -> None:
        super().__init__(code)
        self.code = code
        self.values = values


@dataclass(frozen=True, slots=True)
class Refused:
    """Why a login failed; `locked` is for the log and the audit, never shown to the visitor."""

    locked: bool


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)
    audit.ensure_schema(engine)


def valid_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 64 or any(ch.isspace() or ch in "/:" for ch in name):
        raise UserError("user_bad_name", name=name)
    return name


def add_user(engine: Engine, name: str, role: Role, password: str, *, by: Actor) -> None:
    name = valid_name(name)
    _check_password(password)
    now = now_utc()
    with engine.begin() as conn:
        if conn.execute(select(users.c.name).where(users.c.name == name)).first():
            raise UserError("user_exists", name=name)
        conn.execute(
            users.insert().values(
                name=name,
                role=role.value,
                password_hash=_hasher.hash(password),
                disabled=False,
                created_at=now,
                updated_at=now,
            )
        )
    audit.write_audit(engine, actor=by, action="user_add", target=name, count=1, detail={"role": role.value})


def set_password(engine: Engine, name: str, password: str, *, by: Actor) -> None:
    _check_password(password)
    _change(engine, name, password_hash=_hasher.hash(password))
    audit.write_audit(engine, actor=by, action="user_passwd", target=name, count=1, detail={})


def disable_user(engine: Engine, name: str, *, by: Actor) -> None:
    """Refuse the user from now on; open sessions end at their next request, the token too."""
    _change(engine, name, disabled=True, token_hash=None)
    audit.write_audit(engine, actor=by, action="user_disable", target=name, count=1, detail={})


def new_token(engine: Engine, name: str, *, by: Actor) -> str:
    """A fresh API token for `name` (the old one stops working); returned once, kept hashed."""
    token = "mch_" + secrets.token_urlsafe(32)
    _change(engine, name, token_hash=_sha256(token))
    audit.write_audit(engine, actor=by, action="user_token", target=name, count=1, detail={})
    return token


def list_users(engine: Engine) -> list[dict[str, Any]]:
    c = users.c
    query = select(c.name, c.role, c.disabled, c.created_at, c.updated_at, c.token_hash.is_not(None))
    with engine.connect() as conn:
        rows = conn.execute(query.order_by(c.name)).all()
    return [
        {
            "name": r[0],
            "role": r[1],
            "disabled": bool(r[2]),
            "created_at": r[3],
            "updated_at": r[4],
            "has_token": bool(r[5]),
        }
        for r in rows
    ]


def active_user(engine: Engine, name: str) -> User | None:
    """The user as they are now (role changed, disabled): read on every request."""
    c = users.c
    with engine.connect() as conn:
        row = conn.execute(select(c.role).where((c.name == name) & (c.disabled.is_(False)))).first()
    return User(name, Role(row[0])) if row else None


def token_user(engine: Engine, token: str) -> User | None:
    c = users.c
    with engine.connect() as conn:
        row = conn.execute(
            select(c.name, c.role).where((c.token_hash == _sha256(token)) & (c.disabled.is_(False)))
        ).first()
    return User(row[0], Role(row[1])) if row else None


def authenticate(engine: Engine, name: str, password: str, source: str) -> User | Refused:
    """The user when name and password match and neither the name nor the address is locked.

    Every outcome is audited: `login`, `login_failed`, and `lockout` when this failure
    locks the name. The caller answers every refusal the same way."""
    name = name.strip()[:64]
    since = now_utc() - LOCK_WINDOW
    failures = audit.count_audit(engine, "login_failed", since, actor=name)
    by_address = audit.count_audit(engine, "login_failed", since, source=source)
    c = users.c
    with engine.connect() as conn:
        row = conn.execute(select(c.role, c.password_hash, c.disabled).where(c.name == name)).first()
    good = _verify(row[1] if row else _dummy_hash(), password) and row is not None
    locked = failures >= LOCK_FAILURES or by_address >= LOCK_ADDRESS_FAILURES
    who = Actor(name or "-", audit.os_user(), role=row[0] if row else None, source=source)
    if good and not locked and row is not None and not row[2]:
        if _hasher.check_needs_rehash(row[1]):
            _change(engine, name, password_hash=_hasher.hash(password))
        audit.write_audit(engine, actor=who, action="login", target=name, count=1, detail={})
        log.info("web_login", user=name, source=source)
        return User(name, Role(row[0]))
    why = "locked" if locked else "disabled" if good else "bad_password" if row else "unknown_user"
    audit.write_audit(engine, actor=who, action="login_failed", target=name, count=1, detail={"why": why})
    log.info("web_login_refused", user=name, why=why, source=source)
    if not locked and failures + 1 >= LOCK_FAILURES:
        detail = {"failures": failures + 1, "window_s": int(LOCK_WINDOW.total_seconds())}
        audit.write_audit(engine, actor=who, action="lockout", target=name, count=1, detail=detail)
        log.warning("web_user_locked_out", user=name, source=source, failures=failures + 1)
    return Refused(locked=locked or failures + 1 >= LOCK_FAILURES)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError("user_short_password", n=MIN_PASSWORD)


def _change(engine: Engine, name: str, **values: Any) -> None:
    with engine.begin() as conn:
        done = conn.execute(update(users).where(users.c.name == name).values(**values, updated_at=now_utc()))
        if done.rowcount == 0:
            raise UserError("user_unknown", name=name)


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def when(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
