"""The engine's HTTP app (Starlette): `/status`, `/healthz`, `/readyz` and `/metrics`
(monitors/probes.py), the WeChat callback (`/wechat/callback`, channels/wechat/callback.py),
and the dashboard with its login, pages and JSON API (monitors/web/), all behind the login gate,
which leaves the probes, status, metrics and callback paths public.

`/status` is `mch-engine status --json`: counts, times and names of channels, routes and
destinations, no patient data, so it may be served before login exists. It answers 200
when all is well and 503 when something is down, for a load balancer or a probe.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from channels.wechat import callback as wechat_callback
from core.settings import Settings
from monitors import probes, web
from monitors.engine_status import Unreachable, collect


def build_app(settings: Settings) -> Starlette:
    async def status(_request: Request) -> JSONResponse:
        try:
            result = await run_in_threadpool(collect, settings)
        except Unreachable as exc:
            body = {"ok": False, "problems": [f"journal_unreachable:{exc.url}"]}
            return JSONResponse(body, status_code=503)
        return JSONResponse(result.to_json(settings.engine.tzinfo), status_code=200 if result.ok else 503)

    wechat = wechat_callback.endpoint(settings.engine.database)
    callback = Route(wechat_callback.PATH, wechat, methods=["GET", "POST"])
    routes = [*probes.routes(settings), Route("/status", status), callback, *web.routes(settings)]
    return Starlette(routes=routes, middleware=web.middleware(settings))
