"""The overview (`/`) and a channel's page (`/channels/{name}`).

The overview reads the engine's numbers (monitors/engine_status.py `collect`, the same as
`mch-engine status`) and one rate query for every channel's sparkline; its live part
(`/overview/live`) is what htmx fetches again every few seconds. What is alerting goes at
the top: the open alerts of the engine's own rules (monitors/alerts/store.py, the same as
`/alerts`) and the status problems.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from engine.listing import list_messages
from monitors.alerts import store as alert_store
from monitors.engine_status import ChannelNumbers, EngineStatus, Unreachable, collect
from monitors.web.access import Permission, needs
from monitors.web.context import WebContext
from monitors.web.pages import channel_ops, sparkline
from monitors.web.rendering import render

RECENT = 50


def routes(ctx: WebContext) -> list[Route]:
    @needs(Permission.view)
    async def overview(request: Request) -> Response:
        context = await run_in_threadpool(numbers, ctx)
        return render(request, "pages/overview.html", context, tz=ctx.tz, status_code=_code(context))

    @needs(Permission.view)
    async def live(request: Request) -> Response:
        context = await run_in_threadpool(numbers, ctx)
        return render(request, "pages/overview_live.html", context, tz=ctx.tz)

    @needs(Permission.view)
    async def channel(request: Request) -> Response:
        name = request.path_params["name"]
        context = await run_in_threadpool(channel_numbers, ctx, name)
        code = 404 if context.get("missing") else _code(context)
        return render(request, "pages/channel.html", context, tz=ctx.tz, status_code=code)

    return [
        Route("/", overview, name="overview"),
        Route("/overview/live", live, name="overview_live"),
        Route("/channels/{name}", channel, name="channel"),
    ]


def _code(context: dict[str, Any]) -> int:
    return 503 if context.get("unreachable") else 200


def numbers(ctx: WebContext, now: datetime | None = None) -> dict[str, Any]:
    """The overview's context: status, a sparkline per channel, what is alerting."""
    now = now or datetime.now(UTC)
    try:
        status = collect(ctx.settings, now)
    except Unreachable as exc:
        return {"unreachable": exc.url, "status": None, "channels": [], "alerts": []}
    rates = sparkline.per_minute(ctx.engine, now)
    channels = [_channel_row(c, rates.get(c.name, [0] * sparkline.MINUTES), ctx) for c in status.channels]
    return {
        "status": status,
        "channels": channels,
        "destinations": status.destinations,
        "alerts": open_alerts(ctx),
        "problems": status.problems,
    }


def _channel_row(c: ChannelNumbers, counts: list[int], ctx: WebContext) -> dict[str, Any]:
    return {
        "numbers": c,
        "state": state(c, ctx),
        "spark": sparkline.svg(counts, f"{c.name}: {sum(counts)} / {sparkline.MINUTES} min"),
        "last_minute": counts[-1] if counts else 0,
        "total_recent": sum(counts),
    }


def state(c: ChannelNumbers, ctx: WebContext) -> str:
    """`up`, `problem`, `down`, `off` (switched off in routes.yaml), or `stopped` / `paused`
    by an operator."""
    settings = ctx.settings.channels.get(c.name)
    if settings is not None and not getattr(settings, "enabled", True):
        return "off"
    if c.state != "running":
        return c.state
    if c.error:
        return "problem"
    return "up" if c.listening else "down"


def open_alerts(ctx: WebContext) -> list[alert_store.AlertRow]:
    """The alerts still open (table `alerts`), the oldest first."""
    return alert_store.open_alerts(ctx.engine)


def channel_numbers(ctx: WebContext, name: str) -> dict[str, Any]:
    if name not in ctx.settings.channels:
        return {"missing": name, "name": name}
    context = numbers(ctx)
    status: EngineStatus | None = context["status"]
    if status is None:
        return {**context, "name": name}
    row = next(r for r in context["channels"] if r["numbers"].name == name)
    recent = list(list_messages(ctx.engine, channel=name, status=None, limit=RECENT))
    routes = [r for r in status.routes if name in r.channels]
    held = channel_ops.held(ctx, name)
    return {**context, "name": name, "row": row, "recent": recent, "routes": routes, **held}
