"""Dead letters on the dashboard: list with filters (`/deadletters`), one dead letter
(`/deadletters/{id}`), and the actions as POST forms for the operate permission.

The actions are the CLI's (engine/deadletter_cli.py) through the same code: replay and
reprocess are queued for the running engine by engine/deadletter_requests.py, purge is
deadletter.actions.purge; every one is audited with the signed-in user and the address the
request came from.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from core.masking import mask_key, mask_text
from deadletter import actions, audit
from deadletter import store as dl_store
from engine import deadletter_requests
from monitors.web.access import Permission, needs, require
from monitors.web.context import WebContext, actor
from monitors.web.pages.message_view import lay_out, masked_record
from monitors.web.rendering import render

LIMIT = 200
FILTERS = ("channel", "destination", "reason", "stage", "status")
ACTIONS = ("replay", "reprocess", "purge")
NOTICES = ("queued", "action", "done", "skipped", "failed", "problem")


def routes(ctx: WebContext) -> list[Route]:
    @needs(Permission.view)
    async def listing(request: Request) -> Response:
        user = require(request, Permission.view)
        asked = {k: (request.query_params.get(k) or "").strip() for k in FILTERS}
        if "status" not in request.query_params:
            asked["status"] = dl_store.OPEN
        rows = await run_in_threadpool(_rows, ctx, asked)
        if not user.may(Permission.see_identifiers):
            for row in rows:
                row["reason"] = mask_text(row["reason"] or "")
        context = {
            "asked": asked,
            "rows": rows,
            "limit": LIMIT,
            "stages": dl_store.STAGES,
            "statuses": dl_store.STATUSES,
            "notice": {k: request.query_params[k] for k in NOTICES if k in request.query_params},
        }
        return render(request, "pages/deadletters.html", context, tz=ctx.tz)

    @needs(Permission.view)
    async def one(request: Request) -> Response:
        user = require(request, Permission.view)
        dl_id = int(request.path_params["id"])
        masked = not user.may(Permission.see_identifiers)
        dl = await run_in_threadpool(dl_store.get_dead_letter, ctx.engine, dl_id)
        if dl is None:
            return render(request, "pages/deadletter.html", {"missing": dl_id}, tz=ctx.tz, status_code=404)
        if not masked:  # as `deadletter show`: reading the raw message is audited
            who = actor(request, user)
            await run_in_threadpool(
                audit.write_audit,
                ctx.engine,
                actor=who,
                action="show",
                target=str(dl_id),
                count=1,
                detail={},
            )
        context = _shown(dl, masked)
        context["notice"] = {k: request.query_params[k] for k in NOTICES if k in request.query_params}
        return render(request, "pages/deadletter.html", context, tz=ctx.tz)

    @needs(Permission.operate)
    async def act(request: Request) -> Response:
        user = require(request, Permission.operate)
        action = request.path_params["action"]
        if action not in ACTIONS:
            raise HTTPException(404)
        form = await request.form()
        ids = sorted({int(str(v)) for v in form.getlist("id") if str(v).isdigit()})
        back = str(form.get("back") or "/deadletters")
        back = back if back.startswith("/deadletters") else "/deadletters"
        if not ids:
            return _redirect(back, problem="web_nothing_selected")
        who = actor(request, user)
        if action == "purge":
            reason = str(form.get("why") or "").strip()
            if not reason:
                return _redirect(back, problem="web_purge_needs_reason")
            result = await run_in_threadpool(actions.purge, ctx.engine, ids, reason, who)
            return _redirect(back, **_summary(result))
        queued = await run_in_threadpool(deadletter_requests.queue, ctx.engine, action, ids, who)
        if queued.request_id is not None:
            return _redirect(back, queued=str(queued.request_id))
        assert queued.result is not None
        return _redirect(back, **_summary(queued.result))

    return [
        Route("/deadletters", listing, name="deadletters"),
        Route("/deadletters/{id:int}", one, name="deadletter"),
        Route("/deadletters/{action:str}", act, methods=["POST"], name="deadletter_action"),
    ]


def _rows(ctx: WebContext, asked: dict[str, str]) -> list[dict[str, Any]]:
    return dl_store.list_dead_letters(
        ctx.engine,
        channel=asked["channel"] or None,
        destination=asked["destination"] or None,
        reason=asked["reason"] or None,
        stage=asked["stage"] if asked["stage"] in dl_store.STAGES else None,
        status=asked["status"] if asked["status"] in dl_store.STATUSES else None,
        limit=LIMIT,
    )


def _shown(dl: dict[str, Any], masked: bool) -> dict[str, Any]:
    payload = dl.get("payload")
    if payload is not None and masked:
        payload = masked_record(payload)
    message = dl.get("message")
    if masked:
        dl["reason"] = mask_text(dl["reason"] or "")
        dl["record_id"] = mask_key(dl["record_id"]) if dl.get("record_id") else dl.get("record_id")
        for attempt in dl["attempt_log"]:
            attempt["error"] = mask_text(attempt["error"]) if attempt["error"] else attempt["error"]
    return {
        "dl": dl,
        "payload": None if payload is None else json.dumps(payload, ensure_ascii=False, indent=2),
        "segments": lay_out(message["text"], masked=masked) if message else [],
        "masked": masked,
    }


def _summary(result: actions.ActionResult) -> dict[str, str]:
    return {
        "action": result.action,
        "done": str(len(result.done)),
        "skipped": str(len(result.skipped)),
        "failed": str(len(result.failed)),
    }


def _redirect(back: str, **params: str) -> RedirectResponse:
    """Back to the page the form was on, with its filters and this action's outcome only."""
    path, _, query = back.partition("?")
    kept = [(k, v) for k, v in parse_qsl(query) if k not in NOTICES]
    return RedirectResponse(f"{path}?{urlencode([*kept, *params.items()])}", status_code=303)
