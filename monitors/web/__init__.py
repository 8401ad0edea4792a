"""The dashboard and its JSON API: login, roles, pages, served by the engine's HTTP app.

`routes(settings)` gives the web routes (login, the JSON API, the pages, static files) and
`middleware(settings)` the login gate (monitors/web/auth.py); monitors/http_app.py adds
both to the one app. All of them share one `WebContext` (monitors/web/context.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.middleware import Middleware
    from starlette.routing import BaseRoute

    from core.settings import Settings

# The web parts are imported when the app is built, not with the package: every CLI command
# imports monitors.web.users_cli, and none of them needs Jinja2 or the pages.


def routes(settings: Settings) -> list[BaseRoute]:
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from monitors.web import api, login, pages
    from monitors.web.context import context_for
    from monitors.web.rendering import HERE

    context = context_for(settings)
    static = Mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    return [*login.routes(context), *api.routes(context), *pages.routes(context), static]


def middleware(settings: Settings) -> list[Middleware]:
    from starlette.middleware import Middleware

    from monitors.web.auth import AuthMiddleware
    from monitors.web.context import context_for

    return [Middleware(AuthMiddleware, context=context_for(settings))]
