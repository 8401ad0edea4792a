"""The JSON API under /api/: the dashboard's operations for scripts, described at
/api/openapi.json.

Each endpoint is declared once in `ENDPOINTS` — path, method, permission, summary,
parameters — and both the routes and the OpenAPI document are made from that list, so
the document cannot leave a route out. Every handler starts with `require()` (the
permission of monitors/web/access.py's POLICY). Dead-letter actions go through the same
code as the CLI (engine/deadletter_requests.py, deadletter/actions.py) and are audited with
the signed-in user, the role and the client's address. Identifiers (身份证号, names, HIS
ids, raw messages, payloads) are masked unless the role may see them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from channels.record_store import queries as record_queries
from core.masking import mask_text, mask_value
from deadletter import actions, audit
from deadletter import store as dead_letters
from engine import listing
from engine.deadletter_requests import await_deliveries, carry_out
from engine.operator_actions import action_outcome
from engine.operator_requests import DONE
from monitors.alerts import store as alert_store
from monitors.engine_status import Unreachable, collect
from monitors.web import sessions, users
from monitors.web.access import Permission, Role, User, require
from monitors.web.context import WebContext, actor

Handler = Callable[[Request, WebContext, User], Awaitable[Response]]

MAX_LIMIT = 1000
MAX_WAIT = 120.0


@dataclass(frozen=True)
class Endpoint:
    path: str
    method: str
    permission: Permission
    summary: str
    handler: Handler
    query: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    body: dict[str, Any] | None = None  # JSON schema of the request body
    tags: tuple[str, ...] = field(default=())


def _json(value: Any, status: int = 200) -> JSONResponse:
    return JSONResponse(_plain(value), status_code=status)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _bad(what: str) -> HTTPException:
    return HTTPException(400, detail=what)


def _int(value: str | None, name: str, default: int | None = None) -> int | None:
    if value in (None, ""):
        return default
    try:
        return int(value)
    except ValueError:
        raise _bad(f"{name} must be an integer") from None


def _time(value: str | None, name: str, ctx: WebContext) -> datetime | None:
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise _bad(f"{name} must be an ISO 8601 date/time") from None
    return when if when.tzinfo else when.replace(tzinfo=ctx.settings.engine.tzinfo)


def _limit(request: Request) -> int:
    limit = _int(request.query_params.get("limit"), "limit", 100) or 100
    return max(1, min(limit, MAX_LIMIT))


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise _bad("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _bad("the body must be a JSON object")
    return body


def _ids(body: dict[str, Any]) -> list[int]:
    ids = body.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, int) for i in ids):
        raise _bad("ids: a non-empty list of dead letter ids")
    return ids


# --------------------------------------------------------------------------- handlers


async def get_status(_request: Request, ctx: WebContext, _user: User) -> Response:
    try:
        result = await run_in_threadpool(collect, ctx.settings)
    except Unreachable as exc:
        return _json({"ok": False, "problems": [f"journal_unreachable:{exc.url}"]}, 503)
    return _json(result.to_json(ctx.settings.engine.tzinfo))


async def list_messages(request: Request, ctx: WebContext, user: User) -> Response:
    q = request.query_params
    person = (q.get("person") or "").strip()
    if person and not user.may(Permission.see_identifiers):
        raise HTTPException(403)  # a search by 身份证号 would tell a viewer who was here
    search = listing.Search(
        control_id=q.get("control_id") or None,
        message_type=q.get("type") or None,
        since=_time(q.get("since"), "since", ctx),
        until=_time(q.get("until"), "until", ctx),
    )
    limit = _limit(request)

    def find() -> dict[str, Any]:
        nonlocal search
        if person:
            search = replace(search, journal_ids=frozenset(_messages_of_person(ctx, person)))
        common: dict[str, Any] = {
            "channel": q.get("channel") or None,
            "status": q.get("status") or None,
            "search": search,
        }
        rows = list(listing.list_messages(ctx.engine, limit=limit, **common))
        total = listing.count_messages(ctx.engine, **common)
        return {"total": total, "messages": rows}

    found = await run_in_threadpool(find)
    if not user.may(Permission.see_identifiers):
        found["messages"] = [_masked_message(m) for m in found["messages"]]
    return _json(found)


async def get_message(request: Request, ctx: WebContext, user: User) -> Response:
    journal_id = _int(request.path_params["id"], "id")
    assert journal_id is not None
    shown = user.may(Permission.see_identifiers)

    def find() -> dict[str, Any] | None:
        found = listing.get_message(ctx.engine, journal_id)
        if found is not None:
            found["records"] = ctx.records_of(journal_id)
        if found is not None and shown:  # patient data shown: who looked is audited
            audit.write_audit(
                ctx.engine,
                actor=actor(request, user),
                action="message_show",
                target=str(journal_id),
                count=1,
                detail={},
            )
        return found

    found = await run_in_threadpool(find)
    if found is None:
        return _json({"error": "not_found"}, 404)
    return _json(found if shown else _masked_message(found))


def _messages_of_person(ctx: WebContext, ident: str) -> set[int]:
    """The journal ids of the messages that became records of the person with this key,
    身份证号 or HIS id, in every record store."""
    found: set[int] = set()
    for store in ctx.store_engines():
        key = record_queries.resolve_person(store, ident)
        if key is not None:
            found |= record_queries.journal_ids_of_person(store, key)
    return found


def _masked_message(row: dict[str, Any]) -> dict[str, Any]:
    """What a role without `see_identifiers` sees: no raw message, ACK or record payloads;
    record ids and errors masked."""
    out = {k: v for k, v in row.items() if k not in ("raw", "ack")}
    if "raw" in row:
        out["raw"] = None
        out["raw_hidden"] = True
    if out.get("error"):
        out["error"] = mask_text(out["error"])
    out["deliveries"] = [
        {
            **d,
            "record_id": mask_value("record_id", d.get("record_id")),
            "last_error": _masked(d.get("last_error")),
        }
        for d in row.get("deliveries", [])
    ]
    if "records" in row:
        out["records"] = [
            {
                **r,
                "record_id": mask_value("record_id", r["record_id"]),
                "person_key": mask_value("person_key", r["person_key"]),
                "record": None,  # names, ids and addresses all through it: left out
                "record_hidden": True,
            }
            for r in row["records"]
        ]
    if "dead_letters" in row:
        out["dead_letters"] = [
            {
                **d,
                "record_id": mask_value("record_id", d.get("record_id")),
                "reason": _masked(d.get("reason")),
            }
            for d in row["dead_letters"]
        ]
    return out


def _masked(text: str | None) -> str | None:
    return mask_text(text) if text else text


async def list_dead_letters(request: Request, ctx: WebContext, user: User) -> Response:
    q = request.query_params
    status = q.get("status") or dead_letters.OPEN
    if status not in (*dead_letters.STATUSES, "all"):
        raise _bad("status: open, replayed, reprocessed, purged or all")
    stage = q.get("stage") or None
    if stage not in (None, "transform", "deliver"):
        raise _bad("stage: transform or deliver")
    filters: dict[str, Any] = {
        "channel": q.get("channel") or None,
        "destination": q.get("destination") or None,
        "reason": q.get("reason") or None,
        "since": _time(q.get("since"), "since", ctx),
        "stage": stage,
        "status": None if status == "all" else status,
    }
    rows = await run_in_threadpool(
        dead_letters.list_dead_letters, ctx.engine, limit=_limit(request), **filters
    )
    if not user.may(Permission.see_identifiers):
        rows = [
            {**r, "record_id": mask_value("record_id", r["record_id"]), "reason": mask_text(r["reason"])}
            for r in rows
        ]
    return _json({"dead_letters": rows})


async def replay(request: Request, ctx: WebContext, user: User) -> Response:
    return await _through_engine(request, ctx, user, "replay")


async def reprocess(request: Request, ctx: WebContext, user: User) -> Response:
    return await _through_engine(request, ctx, user, "reprocess")


async def _through_engine(request: Request, ctx: WebContext, user: User, action: str) -> Response:
    """As `deadletter replay|reprocess ID… [--wait S]`: the running engine carries it out."""
    body = await _body(request)
    ids = _ids(body)
    wait = body.get("wait")
    if wait is not None and (not isinstance(wait, int | float) or not 0 < wait <= MAX_WAIT):
        raise _bad(f"wait: seconds, more than 0 and at most {MAX_WAIT:.0f}")
    who = actor(request, user)

    def act() -> tuple[int, dict[str, Any]]:
        carried = carry_out(ctx.engine, action, ids, who)
        if carried.result is not None:
            return 200, {"carried_out_by": None, **action_outcome(carried.result)}
        followed = carried.followed
        assert followed is not None
        req = followed.request
        if req is None or not followed.taken:
            return 202, {"request": followed.id, "state": "queued", "error": "no_engine_took_it"}
        if not req.finished:
            return 202, {"request": followed.id, "state": "taken", "carried_out_by": req.taken_by}
        if req.status != DONE or not req.outcome:
            return 502, {"request": followed.id, "error": (req.outcome or {}).get("error", "-")}
        answer = {"request": req.id, "carried_out_by": req.taken_by, **req.outcome}
        if wait is not None:
            answer["deliveries"] = {
                str(k): v for k, v in await_deliveries(ctx.engine, req.outcome, wait).items()
            }
        return 200, answer

    status, answer = await run_in_threadpool(act)
    return _json(answer, status)


async def purge(request: Request, ctx: WebContext, user: User) -> Response:
    body = await _body(request)
    ids = _ids(body)
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise _bad("reason: why these must never be delivered")
    result = await run_in_threadpool(actions.purge, ctx.engine, ids, reason.strip(), actor(request, user))
    return _json(action_outcome(result))


async def list_alerts(request: Request, ctx: WebContext, _user: User) -> Response:
    def read() -> dict[str, Any]:
        opened = alert_store.open_alerts(ctx.engine)
        recent = alert_store.recent_alerts(ctx.engine, _limit(request))
        return {
            "open": [asdict(a) for a in opened],
            "recent": [asdict(a) for a in recent],
        }

    return _json(await run_in_threadpool(read))


async def read_audit(request: Request, ctx: WebContext, _user: User) -> Response:
    q = request.query_params
    found = await run_in_threadpool(
        audit.list_audit,
        ctx.engine,
        _limit(request),
        action=q.get("action") or None,
        actor=q.get("actor") or None,
        since=_time(q.get("since"), "since", ctx),
    )
    return _json({"entries": found})


async def list_users(_request: Request, ctx: WebContext, _user: User) -> Response:
    return _json({"users": await run_in_threadpool(users.list_users, ctx.engine)})


async def add_user(request: Request, ctx: WebContext, user: User) -> Response:
    body = await _body(request)
    name, role, password = body.get("name"), body.get("role"), body.get("password")
    if not isinstance(name, str) or role not in set(Role) or not isinstance(password, str):
        raise _bad("name, role (viewer, operator, admin, auditor) and password are required")
    try:
        await run_in_threadpool(
            users.add_user, ctx.engine, name, Role(role), password, by=actor(request, user)
        )
    except users.UserError as exc:
        return _json({"error": exc.code, **exc.values}, 409 if exc.code == "user_exists" else 400)
    return _json({"name": name.strip(), "role": role}, 201)


async def disable_user(request: Request, ctx: WebContext, user: User) -> Response:
    name = request.path_params["name"]

    def disable() -> None:
        users.disable_user(ctx.engine, name, by=actor(request, user))
        sessions.close_user_sessions(ctx.engine, name)

    try:
        await run_in_threadpool(disable)
    except users.UserError as exc:
        return _json({"error": exc.code, **exc.values}, 404)
    return _json({"name": name, "disabled": True})


async def me(request: Request, _ctx: WebContext, user: User) -> Response:
    session = request.scope.get("mch_session")
    permissions = sorted(p.value for p in Permission if user.may(p))
    csrf = session.csrf if session else None
    return _json({"name": user.name, "role": user.role.value, "permissions": permissions, "csrf_token": csrf})


async def openapi(_request: Request, _ctx: WebContext, _user: User) -> Response:
    return _json(openapi_document())


# --------------------------------------------------------------------------- the table

_IDS = {"type": "array", "items": {"type": "integer"}, "minItems": 1}
_WAIT = {"type": "number", "description": f"wait up to this many seconds (≤ {MAX_WAIT:.0f}) for delivery"}
_LIMIT = ("limit", "integer", f"at most this many rows (default 100, at most {MAX_LIMIT})")
_SINCE = ("since", "string", "ISO 8601 date/time; without offset the engine's time zone")

ENDPOINTS: tuple[Endpoint, ...] = (
    Endpoint("/api/openapi.json", "GET", Permission.view, "This document", openapi, tags=("meta",)),
    Endpoint(
        "/api/me",
        "GET",
        Permission.view,
        "Who is signed in, the role's permissions, and the session's CSRF token",
        me,
    ),
    Endpoint(
        "/api/status",
        "GET",
        Permission.view,
        "The engine's status (as `mch-engine status --json`)",
        get_status,
    ),
    Endpoint(
        "/api/messages",
        "GET",
        Permission.view,
        "Search the journal, newest first",
        list_messages,
        query=(
            ("channel", "string", "channel name"),
            ("status", "string", "journal status (routed, failed, unrouted, …)"),
            ("control_id", "string", "MSH-10 message control id"),
            ("person", "string", "身份证号, HIS id or person key: messages that became her records"),
            ("type", "string", "message type, e.g. ADT^A04, or ADT"),
            _SINCE,
            ("until", "string", "received before this ISO 8601 date/time"),
            _LIMIT,
        ),
    ),
    Endpoint(
        "/api/messages/{id}",
        "GET",
        Permission.view,
        "One message: raw text (see_identifiers only), the records it became, deliveries with every "
        "attempt, dead letters",
        get_message,
    ),
    Endpoint(
        "/api/deadletters",
        "GET",
        Permission.view,
        "Dead letters, newest failure first",
        list_dead_letters,
        query=(
            ("status", "string", "open (default), replayed, reprocessed, purged or all"),
            ("channel", "string", "channel"),
            ("destination", "string", "destination"),
            ("reason", "string", "reason contains this text"),
            ("stage", "string", "transform or deliver"),
            _SINCE,
            _LIMIT,
        ),
    ),
    Endpoint(
        "/api/deadletters/replay",
        "POST",
        Permission.operate,
        "Replay dead letters through the running engine (as `deadletter replay`)",
        replay,
        body={"type": "object", "required": ["ids"], "properties": {"ids": _IDS, "wait": _WAIT}},
    ),
    Endpoint(
        "/api/deadletters/reprocess",
        "POST",
        Permission.operate,
        "Reprocess dead letters through the running engine (as `deadletter reprocess`)",
        reprocess,
        body={"type": "object", "required": ["ids"], "properties": {"ids": _IDS, "wait": _WAIT}},
    ),
    Endpoint(
        "/api/deadletters/purge",
        "POST",
        Permission.operate,
        "Close dead letters for good, with a reason (as `deadletter purge --why`)",
        purge,
        body={
            "type": "object",
            "required": ["ids", "reason"],
            "properties": {"ids": _IDS, "reason": {"type": "string", "minLength": 1}},
        },
    ),
    Endpoint(
        "/api/alerts",
        "GET",
        Permission.view,
        "The engine's alerts: those still open (oldest first) and the latest episodes, open or past "
        "(newest first)",
        list_alerts,
        query=(_LIMIT,),
    ),
    Endpoint(
        "/api/audit",
        "GET",
        Permission.read_audit,
        "The audit log, newest first",
        read_audit,
        query=(
            ("action", "string", "only this action"),
            ("actor", "string", "only this user"),
            _SINCE,
            _LIMIT,
        ),
    ),
    Endpoint("/api/users", "GET", Permission.manage_users, "The dashboard's users", list_users),
    Endpoint(
        "/api/users",
        "POST",
        Permission.manage_users,
        "Add a user",
        add_user,
        body={
            "type": "object",
            "required": ["name", "role", "password"],
            "properties": {
                "name": {"type": "string"},
                "role": {"type": "string", "enum": [r.value for r in Role]},
                "password": {"type": "string", "minLength": users.MIN_PASSWORD},
            },
        },
    ),
    Endpoint(
        "/api/users/{name}/disable",
        "POST",
        Permission.manage_users,
        "Disable a user: sessions and API token end",
        disable_user,
    ),
)


def routes(context: WebContext) -> list[BaseRoute]:
    def bind(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                user = require(request, endpoint.permission)
                return await endpoint.handler(request, context, user)
            except HTTPException as exc:
                error = _ERRORS.get(exc.status_code)
                if error is None:
                    raise
                detail = {"detail": exc.detail} if exc.status_code == 400 else {}
                return _json({"error": error, **detail}, exc.status_code)

        handle.permission = endpoint.permission  # type: ignore[attr-defined]  # read by the route walk
        handle.__doc__ = endpoint.summary
        return handle

    return [Route(e.path, bind(e), methods=[e.method]) for e in ENDPOINTS]


_ERRORS = {400: "bad_request", 401: "login_required", 403: "forbidden"}


def openapi_document() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for e in ENDPOINTS:
        operation: dict[str, Any] = {
            "summary": e.summary,
            "description": f"Needs the `{e.permission.value}` permission.",
            "x-permission": e.permission.value,
            "responses": {
                "200": {"description": "OK"},
                "400": {"description": "bad request"},
                "401": {"description": "not signed in"},
                "403": {"description": "the role may not"},
            },
        }
        params = [
            {"name": name, "in": "query", "required": False, "schema": {"type": kind}, "description": doc}
            for name, kind, doc in e.query
        ]
        params += [
            {
                "name": p,
                "in": "path",
                "required": True,
                "schema": {"type": "integer" if p == "id" else "string"},
            }
            for p in _path_params(e.path)
        ]
        if params:
            operation["parameters"] = params
        if e.body is not None:
            operation["requestBody"] = {"required": True, "content": {"application/json": {"schema": e.body}}}
        paths.setdefault(e.path, {})[e.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "mch-engine", "version": "1"},
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": sessions.COOKIE},
                "csrf": {"type": "apiKey", "in": "header", "name": "X-CSRF-Token"},
                "token": {"type": "http", "scheme": "bearer"},
            }
        },
        "security": [{"token": []}, {"session": [], "csrf": []}],
        "paths": paths,
    }


def _path_params(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]
