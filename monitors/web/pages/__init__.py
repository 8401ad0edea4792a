"""The dashboard's pages: overview, channel, message search and message, dead letters.

Server-rendered (Jinja2, templates/pages/), refreshed in part by htmx (served by the
engine from static/vendor/, never a CDN), no inline script or style, so a strict
Content-Security-Policy (`default-src 'self'`) holds. Every handler names the permission
it needs (monitors/web/access.py); the login middleware puts the user on the request.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from core.settings import Settings


def routes(settings: Settings) -> list[BaseRoute]:
    """The pages' routes (their static files are served by monitors/web/__init__.py)."""
    from monitors.web.pages import deadletters, messages, overview
    from monitors.web.pages.site import Site

    site = Site(settings)
    return [
        *overview.routes(site),
        *messages.routes(site),
        *deadletters.routes(site),
    ]
