"""Stop, start and pause a channel from its page (`/channels/{name}`), for the operate
permission: POST forms calling the CLI's code (engine/channel_control.py `request`), audited
with the signed-in user and the address the request came from.

A pause lasts one of a few fixed spans chosen on the page; the CLI takes any duration.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from engine import channel_control
from monitors.web.access import Permission, needs, require
from monitors.web.context import WebContext, actor

PAUSE_SPANS = {"15m": 900.0, "30m": 1800.0, "1h": 3600.0, "2h": 7200.0}
"""What the page offers for a pause, shortest first."""


def routes(ctx: WebContext) -> list[Route]:
    @needs(Permission.operate)
    async def act(request: Request) -> Response:
        user = require(request, Permission.operate)
        name, action = request.path_params["name"], request.path_params["action"]
        if name not in ctx.settings.channels or action not in channel_control.ACTIONS:
            raise HTTPException(404)
        form = await request.form()
        pause_for: float | None = None
        if action == channel_control.PAUSE:
            pause_for = PAUSE_SPANS.get(str(form.get("for") or ""))
            if pause_for is None:
                raise HTTPException(400)
        who = actor(request, user)
        _, rid = await run_in_threadpool(
            channel_control.request, ctx.engine, name, action, who, pause_for=pause_for
        )
        query = urlencode({"channel_action": action, "request": str(rid)})
        return RedirectResponse(f"/channels/{quote(name)}?{query}", status_code=303)

    return [Route("/channels/{name}/{action}", act, methods=["POST"], name="channel_action")]


def held(ctx: WebContext, name: str) -> dict[str, Any]:
    """The channel page's part: who holds the channel and until when, the pause spans offered."""
    control = channel_control.held(ctx.engine).get(name)
    return {"control": control, "pause_spans": list(PAUSE_SPANS)}
