"""The login gate in front of the whole HTTP app: who is asking, CSRF, security headers.

For every request it finds the user — from the session cookie (monitors/web/sessions.py)
or from an `Authorization: Bearer` API token (monitors/web/users.py) — and puts it on
the scope for `access.require`. Public paths (health, status, metrics, the WeChat
callback, the login page, static files) pass without one; any other path answers 401
JSON under /api/ and redirects a browser to /login.

CSRF: a state-changing request (not GET/HEAD/OPTIONS) made with a session cookie must
carry the session's token, in the `X-CSRF-Token` header (the JSON API, scripts) or in a
form's `csrf_token` field (the pages). A bearer-token request carries no cookie, so a
forged cross-site request cannot use it, and needs no CSRF token. The login form itself
has no session yet; the SameSite=Strict cookie and the lockout cover it.

Every response gets the security headers below; every response but a static file is
`Cache-Control: no-store`, since pages and API answers carry patient data.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, quote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from monitors.web import sessions, users
from monitors.web.access import User
from monitors.web.context import WebContext

PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/status", "/wechat/callback", "/login"})
PUBLIC_PREFIXES = ("/static/",)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
MAX_FORM_BYTES = 1 << 20

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
]


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def is_https(scope: Scope) -> bool:
    """Served over HTTPS, or behind a proxy that says it was (X-Forwarded-Proto)."""
    forwarded = Headers(scope=scope).get("x-forwarded-proto", "")
    return scope.get("scheme") == "https" or forwarded.split(",")[0].strip().lower() == "https"


class AuthMiddleware:
    def __init__(self, app: ASGIApp, context: WebContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        send = _with_security_headers(send, cache=not path.startswith(PUBLIC_PREFIXES))
        user, session, via = await self._who(scope)
        scope["user"], scope["mch_session"], scope["mch_auth"] = user, session, via
        if is_public(path):
            await self.app(scope, receive, send)
            return
        if user is None:
            await _refuse_anonymous(scope, path)(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and via == "session":
            assert session is not None
            ok, receive = await _csrf_ok(scope, receive, session.csrf)
            if not ok:
                await _answer(path, 403, "csrf")(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _who(self, scope: Scope) -> tuple[User | None, sessions.Session | None, str | None]:
        headers = Headers(scope=scope)
        engine_needed = headers.get("authorization", "").lower().startswith("bearer ") or _cookie(
            headers, sessions.COOKIE
        )
        if not engine_needed:
            return None, None, None
        return await run_in_threadpool(self._lookup, headers)

    def _lookup(self, headers: Headers) -> tuple[User | None, sessions.Session | None, str | None]:
        engine = self.context.engine
        bearer = headers.get("authorization", "")
        if bearer.lower().startswith("bearer "):
            user = users.token_user(engine, bearer[7:].strip())
            return user, None, "token" if user else None
        session = sessions.find_session(engine, _cookie(headers, sessions.COOKIE), self.context.lifetimes)
        if session is None:
            return None, None, None
        user = users.active_user(engine, session.user_name)
        return (user, session, "session") if user else (None, None, None)


def _cookie(headers: Headers, name: str) -> str:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return ""


def _refuse_anonymous(scope: Scope, path: str) -> Response:
    if path.startswith("/api/"):
        return JSONResponse({"error": "login_required"}, status_code=401)
    query = scope.get("query_string", b"").decode("latin-1")
    back = path + (f"?{query}" if query else "")
    return RedirectResponse(f"/login?next={quote(back, safe='')}", status_code=303)


def _answer(path: str, status: int, error: str) -> Response:
    if path.startswith("/api/"):
        return JSONResponse({"error": error}, status_code=status)
    return PlainTextResponse(error, status_code=status)


async def _csrf_ok(scope: Scope, receive: Receive, expected: str) -> tuple[bool, Receive]:
    """Whether the request carries the session's token; the body, when read to find it,
    is handed on unchanged to the app."""
    headers = Headers(scope=scope)
    given = headers.get(CSRF_HEADER)
    if given is not None:
        return hmac.compare_digest(given.encode(), expected.encode()), receive
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return False, receive
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_FORM_BYTES:
            return False, receive
    fields = parse_qs(body.decode("utf-8", "replace"))
    token = (fields.get(CSRF_FIELD) or [""])[0]
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return hmac.compare_digest(token.encode(), expected.encode()), replay


def _with_security_headers(send: Send, *, cache: bool) -> Callable[[Message], Awaitable[None]]:
    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers: list[Any] = [(k, v) for k, v in message.get("headers", []) if k.lower() not in _REPLACED]
            headers += SECURITY_HEADERS
            if cache:
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": headers}
        await send(message)

    return sending


_REPLACED = {k for k, _ in SECURITY_HEADERS} | {b"cache-control"}
