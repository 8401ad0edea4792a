"""Message search (`/messages`) and a message's page (`/messages/{id}`).

The search is `mch-engine messages list`'s query (engine/listing.py) with the dashboard's
filters: control id, 身份证号 or HIS id, type, status, channel, time range. A message's page
lays out its raw text (message_view.py) and shows what became of it. Identifiers are
masked unless the role may see them; who read a message unmasked is audited, as the CLI's
`deadletter show` is.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from core.i18n import t_in
from core.masking import mask_key, mask_text
from deadletter import audit
from engine.listing import Search, count_messages, list_messages
from engine.listing_commands import JOURNAL_STATUSES
from monitors.web.access import Permission, needs, require
from monitors.web.context import WebContext, actor
from monitors.web.pages import message_detail
from monitors.web.pages.message_view import lay_out, masked_record
from monitors.web.rendering import language, render

LIMIT = 100
FILTERS = ("control_id", "identifier", "message_type", "status", "channel", "since", "until")


class BadTime(ValueError):
    pass


def routes(ctx: WebContext) -> list[Route]:
    @needs(Permission.view)
    async def search(request: Request) -> Response:
        asked = {k: (request.query_params.get(k) or "").strip() for k in FILTERS}
        try:
            found = await run_in_threadpool(_search, ctx, asked)
            error = None
        except BadTime as exc:
            found, error = {"rows": [], "total": 0}, t_in(language(request), "web_bad_time", value=str(exc))
        masked = not _sees(request)
        for row in found["rows"]:
            row["error"] = mask_text(row["error"]) if masked and row["error"] else row["error"]
        context = {
            "asked": asked,
            "error": error,
            "statuses": JOURNAL_STATUSES,
            "channels": sorted(ctx.settings.channels),
            "searched": any(asked.values()),
            "limit": LIMIT,
            **found,
        }
        return render(request, "pages/messages.html", context, tz=ctx.tz, status_code=400 if error else 200)

    @needs(Permission.view)
    async def one(request: Request) -> Response:
        user = require(request, Permission.view)
        journal_id = int(request.path_params["id"])
        masked = not _sees(request)
        context = await run_in_threadpool(detail, ctx, journal_id, masked=masked)
        if context is None:
            return render(request, "pages/message.html", {"missing": journal_id}, tz=ctx.tz, status_code=404)
        if not masked:  # the raw message is patient data: who read it is audited
            who = actor(request, user)
            target = f"message {journal_id}"
            await run_in_threadpool(
                audit.write_audit, ctx.engine, actor=who, action="show", target=target, count=1, detail={}
            )
        return render(request, "pages/message.html", context, tz=ctx.tz)

    return [
        Route("/messages", search, name="messages"),
        Route("/messages/{id:int}", one, name="message"),
    ]


def _sees(request: Request) -> bool:
    user = require(request, Permission.view)
    return user.may(Permission.see_identifiers)


def _search(ctx: WebContext, asked: dict[str, str]) -> dict[str, Any]:
    wanted = Search(
        control_id=asked["control_id"] or None,
        identifier=asked["identifier"] or None,
        message_type=asked["message_type"] or None,
        since=_time(asked["since"], ctx),
        until=_time(asked["until"], ctx),
    )
    filters: dict[str, Any] = {
        "channel": asked["channel"] or None,
        "status": asked["status"] if asked["status"] in JOURNAL_STATUSES else None,
        "search": wanted,
    }
    rows = list(list_messages(ctx.engine, limit=LIMIT, **filters))
    total = count_messages(ctx.engine, **filters) if len(rows) >= LIMIT else len(rows)
    return {"rows": rows, "total": total}


def _time(value: str, ctx: WebContext) -> datetime | None:
    """A date or date and time from the form, in the engine's zone unless it says otherwise."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadTime(value[:40]) from exc
    return when if when.tzinfo else when.replace(tzinfo=ctx.tz)


def detail(ctx: WebContext, journal_id: int, *, masked: bool) -> dict[str, Any] | None:
    msg = message_detail.message(ctx.engine, journal_id)
    if msg is None:
        return None
    records = ctx.records_of(journal_id)
    record_ids = sorted({d["record_id"] for d in msg["deliveries"]} | {r["record_id"] for r in records})
    notices = message_detail.sent_notices(ctx.engine, record_ids)
    hide_key = mask_key if masked else _same
    hide_text = mask_text if masked else _same
    for d in msg["deliveries"]:
        d["record_id"], d["last_error"] = hide_key(d["record_id"]), _opt(hide_text, d["last_error"])
    for r in records:
        payload = masked_record(r["record"]) if masked else r["record"]
        r["record_id"], r["shown"] = (
            hide_key(r["record_id"]),
            json.dumps(payload, ensure_ascii=False, indent=2),
        )
    for n in notices:
        n["record_id"], n["reason"] = hide_key(n["record_id"]), _opt(hide_text, n["reason"])
    for d in msg["dead_letters"]:
        d["reason"] = _opt(hide_text, d["reason"])
    msg["error"] = _opt(hide_text, msg["error"])
    return {
        "message": msg,
        "segments": lay_out(msg["text"], masked=masked),
        "masked": masked,
        "records": records,
        "notices": notices,
    }


def _same(value: str) -> str:
    return value


def _opt(fn: Any, value: str | None) -> str | None:
    return fn(value) if value else value
