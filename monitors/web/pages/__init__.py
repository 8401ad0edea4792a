"""The dashboard's pages: overview, channel, message search and message, dead letters.

Server-rendered (Jinja2, templates/pages/), refreshed in part by htmx (served by the
engine from static/vendor/, never a CDN), no inline script or style, so a strict
Content-Security-Policy (`default-src 'self'`) holds. Every handler names the permission
it needs (monitors/web/access.py); the login middleware puts the user on the request.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from core.settings import Settings

STATIC = Path(__file__).parent.parent / "static"


def routes(settings: Settings) -> list[BaseRoute]:
    """The pages' routes and the static files they use (htmx, the style sheet)."""
    from monitors.web.pages import channel_ops, deadletters, messages, overview
    from monitors.web.pages.site import Site

    site = Site(settings)
    return [
        *overview.routes(site),
        *messages.routes(site),
        *deadletters.routes(site),
        *channel_ops.routes(site),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
