"""/login and /logout. A refusal says the same thing, after the same work, whether the
name is unknown, the password wrong, the user disabled or locked out (monitors/web/users.py)."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from core import i18n
from deadletter import audit
from deadletter.audit import Actor
from monitors.web import sessions, users
from monitors.web.access import current_user, needs
from monitors.web.auth import is_https, source_of
from monitors.web.context import WebContext
from monitors.web.rendering import render

_TEXT: dict[str, tuple[str, str]] = {
    "web_title": ("妇幼接口引擎", "MCH integration engine"),
    "web_login_title": ("登录", "Sign in"),
    "web_login_name": ("用户名", "User name"),
    "web_login_password": ("密码", "Password"),
    "web_login_submit": ("登录", "Sign in"),
    "web_login_refused": (
        "用户名或密码不正确，或账号已被暂时锁定。请稍后再试，或联系管理员。",
        "Wrong user name or password, or the account is locked for a while. "
        "Try again later or ask an administrator.",
    ),
    "web_logout": ("退出", "Sign out"),
    "web_signed_in_as": ("{name}（{role}）", "{name} ({role})"),
    "web_lang_switch": ("English", "中文"),
    "web_nav_api": ("接口文档", "API"),
    "web_role_viewer": ("查看", "viewer"),
    "web_role_operator": ("操作员", "operator"),
    "web_role_admin": ("管理员", "admin"),
    "web_role_auditor": ("审计员", "auditor"),
}
i18n.register(_TEXT)


def routes(context: WebContext) -> list[BaseRoute]:
    async def login_page(request: Request) -> Response:
        return render(
            request, "login.html", {"next": _next(request.query_params.get("next")), "refused": False}
        )

    async def login(request: Request) -> Response:
        form = await request.form()
        name = str(form.get("name") or "")
        password = str(form.get("password") or "")
        target = _next(str(form.get("next") or ""))
        source = source_of(request.scope)
        outcome = await run_in_threadpool(users.authenticate, context.engine, name, password, source)
        if isinstance(outcome, users.Refused):
            values = {"next": target, "refused": True, "name": name}
            return render(request, "login.html", values, status_code=401)
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
            who = Actor(user.name, audit.os_user(), role=user.role.value, source=source_of(request.scope))

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
