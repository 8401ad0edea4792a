"""The dashboard's pages: overview, channel, message search and message, dead letters, the
alerts, the audit log.

Server-rendered (Jinja2, templates/pages/, each extending templates/base.html), refreshed in
part by htmx (served by the engine from static/vendor/, never a CDN), no inline script or
style, so the strict Content-Security-Policy of monitors/web/auth.py holds. Every handler
names the permission it needs with `access.needs`; the login middleware puts the user on
the request, and a form that changes something carries the session's CSRF token.
"""

from __future__ import annotations

from starlette.routing import BaseRoute

from monitors.web.context import WebContext


def routes(context: WebContext) -> list[BaseRoute]:
    """The pages' routes (their static files are served by monitors/web/__init__.py)."""
    from monitors.web.pages import alerts, audit_log, channel_ops, deadletters, messages, overview

    return [
        *overview.routes(context),
        *messages.routes(context),
        *deadletters.routes(context),
        *alerts.routes(context),
        *audit_log.routes(context),
        *channel_ops.routes(context),
    ]
