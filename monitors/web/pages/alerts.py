"""The alerts page (`/alerts`): the episodes still open first, then the past ones, as the
`alerts` channel wrote them (monitors/alerts/store.py) — the same episodes the on-call staff
were sent over WeChat and the log carries as `alert_opened` / `alert_resolved`. htmx asks
the same address again every few seconds (`HX-Request`) and gets the tables alone."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from monitors.alerts import store
from monitors.web.access import Permission, needs
from monitors.web.context import WebContext
from monitors.web.rendering import render

PAST = 100


def routes(ctx: WebContext) -> list[Route]:
    @needs(Permission.view)
    async def listing(request: Request) -> Response:
        context = await run_in_threadpool(episodes, ctx)
        part = "alerts_live" if request.headers.get("HX-Request") else "alerts"
        response = render(request, f"pages/{part}.html", context, tz=ctx.tz)
        response.headers["Vary"] = "HX-Request"  # one address, two answers: never cached as one
        return response

    return [Route("/alerts", listing, name="alerts")]


def episodes(ctx: WebContext) -> dict[str, Any]:
    """Open episodes, the oldest first; then the latest `PAST` resolved ones, newest first."""
    opened = store.open_alerts(ctx.engine)
    recent = store.recent_alerts(ctx.engine, PAST + len(opened))
    past = [a for a in recent if a.state == store.RESOLVED][:PAST]
    return {"open": opened, "past": past, "limit": PAST}
