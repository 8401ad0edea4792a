"""The dashboard and its JSON API: login, roles, pages, served by the engine's HTTP app.

`routes(settings)` gives the web routes (login, the JSON API, the pages, static files) and
`middleware(settings)` the login gate (monitors/web/auth.py); monitors/http_app.py adds
both to the one app. All of them share one `WebContext` (monitors/web/context.py).
"""

from __future__ import annotations

from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from core.settings import Settings
from monitors.web import api, login, pages
from monitors.web.auth import AuthMiddleware
from monitors.web.context import context_for
from monitors.web.rendering import HERE


def routes(settings: Settings) -> list[BaseRoute]:
    context = context_for(settings)
    static = Mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return [*login.routes(context), *api.routes(context), *pages.routes(context), static]


def middleware(settings: Settings) -> list[Middleware]:
    return [Middleware(AuthMiddleware, context=context_for(settings))]
