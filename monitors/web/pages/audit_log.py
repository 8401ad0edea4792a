"""The audit log (`/audit`), for the roles that may read it: who did what, when, from where,
newest first, filtered by action and by who — the same table `deadletter audit` and
`/api/audit` read (deadletter/audit.py)."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deadletter import audit
from monitors.web.access import Permission, needs
from monitors.web.context import WebContext
from monitors.web.rendering import render

LIMIT = 200


def routes(ctx: WebContext) -> list[Route]:
    @needs(Permission.read_audit)
    async def listing(request: Request) -> Response:
        asked = {k: (request.query_params.get(k) or "").strip() for k in ("action", "actor")}
        action = asked["action"] if asked["action"] in audit.ACTIONS else None
        rows = await run_in_threadpool(
            audit.list_audit, ctx.engine, LIMIT, action=action, actor=asked["actor"] or None
        )
        for row in rows:
            row["detail"] = json.dumps(row["detail"], ensure_ascii=False) if row["detail"] else ""
        context = {"asked": asked, "rows": rows, "actions": audit.ACTIONS, "limit": LIMIT}
        return render(request, "pages/audit.html", context, tz=ctx.tz)

    return [Route("/audit", listing, name="audit")]
