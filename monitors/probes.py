"""The machine-facing routes: `/healthz` (alive), `/readyz` (ready) and `/metrics`.

None needs a login and none shows patient data. `/healthz` answers 200 while the process
serves HTTP at all; `/readyz` 200 only when monitors/readiness.py finds nothing wrong, else
503 with the reasons, for a load balancer, Kubernetes or a hospital's own probe.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route

from core.settings import Settings
from monitors import metrics, readiness


def routes(settings: Settings) -> list[BaseRoute]:
    async def healthz(_request: Request) -> JSONResponse:
        """Alive: this process answers (what it can reach is `/readyz`'s business)."""
        return JSONResponse({"status": "ok"})

    async def readyz(_request: Request) -> JSONResponse:
        reasons = await run_in_threadpool(readiness.problems, settings)
        if reasons:
            return JSONResponse({"status": "not ready", "reasons": reasons}, status_code=503)
        return JSONResponse({"status": "ready", "reasons": []})

    return [Route("/healthz", healthz), Route("/readyz", readyz), *metrics.routes(settings)]
