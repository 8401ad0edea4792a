"""/login and /logout. A refusal says the same thing, after the same work, whether the
name is unknown, the password wrong, the user disabled or locked out (monitors/web/users.py)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from deadletter import audit
from monitors.web import sessions, users
from monitors.web.access import current_user, needs
from monitors.web.auth import is_https
from monitors.web.context import WebContext, actor, source_of
from monitors.web.rendering import render


def routes(context: WebContext) -> list[BaseRoute]:
    async def login_page(request: Request) -> Response:
        values = {"next": _next(request.query_params.get("next")), "refused": False}
        return render(request, "login.html", values, tz=context.tz)

    async def login(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name") or "")
        password = str(form.get("password") or "")
        target = _next(str(form.get("next") or ""))
        source = source_of(request)
        outcome = await run_in_threadpool(users.authenticate, context.engine, name, password, source)
        if isinstance(outcome, users.Refused):
            values = {"next": target, "refused": True, "name": name}
            return render(request, "login.html", values, tz=context.tz, status_code=401)
        sid, _session = await run_in_threadpool(sessions.open_session, context.engine, outcome.name, source)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            sessions.COOKIE,
            sid,
            httponly=True,
            samesite="strict",
            secure=is_https(request.scope),
            path="/",
        )
        return response

    @needs(None)
    async def logout(request: Request) -> Response:
        user = current_user(request)
        sid = request.cookies.get(sessions.COOKIE, "")
        if user is not None and sid:
            who = actor(request, user)

            def close() -> None:
                sessions.close_session(context.engine, sid)
                audit.write_audit(
                    context.engine, actor=who, action="logout", target=user.name, count=1, detail={}
                )

            await run_in_threadpool(close)
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(sessions.COOKIE, path="/", httponly=True, samesite="strict")
        return response

    return [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
    ]


def _next(value: str | None) -> str:
    """Where to go after login: a path on this site only (never `//host` or a URL)."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value:
        return value
    return "/"
