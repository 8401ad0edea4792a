"""Who may do what on the dashboard and the JSON API: one table, read by every route.

Pages and API routes name the permission they need (`require(request, Permission.X)`); the
login middleware puts the signed-in `User` on the request scope. A route never checks a role
by name, so the table below is the whole access policy, and a test walks every route
against every role.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from functools import wraps
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection


class Role(StrEnum):
    viewer = "viewer"
    operator = "operator"
    admin = "admin"
    auditor = "auditor"


class Permission(StrEnum):
    view = "view"  # overview, channels, messages, dead letters, alerts (identifiers masked)
    see_identifiers = "see_identifiers"  # unmasked 身份证号, names, HIS ids, raw messages
    operate = "operate"  # replay, reprocess, purge, start / stop / pause a channel
    read_audit = "read_audit"  # the audit log
    manage_users = "manage_users"  # add, disable, reset users


POLICY: dict[Role, frozenset[Permission]] = {
    Role.viewer: frozenset({Permission.view}),
    Role.operator: frozenset({Permission.view, Permission.see_identifiers, Permission.operate}),
    Role.admin: frozenset(Permission),
    Role.auditor: frozenset({Permission.view, Permission.read_audit}),
}


@dataclass(frozen=True)
class User:
    name: str
    role: Role

    def may(self, permission: Permission) -> bool:
        return permission in POLICY[self.role]


def current_user(conn: HTTPConnection) -> User | None:
    """The signed-in user the login middleware put on the scope, or None."""
    user = conn.scope.get("user")
    return user if isinstance(user, User) else None


def require(conn: HTTPConnection, permission: Permission) -> User:
    """The signed-in user if allowed; 401 when nobody is signed in, 403 when the role may not."""
    user = current_user(conn)
    if user is None:
        raise HTTPException(401)
    if not user.may(permission):
        raise HTTPException(403)
    return user


Endpoint = Callable[..., Awaitable[Any]]


def needs(permission: Permission | None) -> Callable[[Endpoint], Endpoint]:
    """Mark an endpoint with the permission it needs (None: any signed-in user) and check it
    first. The test that walks every route reads the mark, so a route without one fails it."""

    def mark(endpoint: Endpoint) -> Endpoint:
        @wraps(endpoint)
        async def checked(conn: Any, *args: Any, **kwargs: Any) -> Any:
            if permission is not None:
                require(conn, permission)
            elif current_user(conn) is None:
                raise HTTPException(401)
            return await endpoint(conn, *args, **kwargs)

        checked.permission = permission  # type: ignore[attr-defined]
        return checked

    return mark
