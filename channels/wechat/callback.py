"""The WeChat callback endpoint (服务器配置 URL): WeChat's signature checked on every request,
GET answered with its `echostr`, POST events applied to the bindings.

Signature: sha1 of the sorted, concatenated [token, timestamp, nonce] equals `signature`
(query parameters); the token is the one set in the account's server configuration, read
from `MCH_WECHAT_CALLBACK_TOKEN`. Without it, or with a wrong signature, the answer is 403
and nothing is read. Plaintext mode only: safe mode (encrypted messages) is not supported.

Events (POST, XML):
- `subscribe` / `unsubscribe`: the user follows or leaves; an unsubscribed user gets nothing;
- `subscribe_msg_popup_event`: accept or reject per template, kept in the binding's consents;
- `TEMPLATESENDJOBFINISH`: the delivery result of a template message, by msgid.
Anything else is answered `success` and ignored, as WeChat expects.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from channels.wechat import bindings, delivery_reports
from core.clock import now_utc
from core.database import make_engine
from core.masking import mask_key

TOKEN_ENV = "MCH_WECHAT_CALLBACK_TOKEN"
PATH = "/wechat/callback"
MAX_BODY = 64 * 1024  # WeChat's event XML is a few hundred bytes

log = structlog.get_logger("channels.wechat.callback")


def signature_of(token: str, timestamp: str, nonce: str) -> str:
    return hashlib.sha1("".join(sorted([token, timestamp, nonce])).encode("utf-8")).hexdigest()


def signature_ok(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    if not (token and signature and timestamp and nonce):
        return False
    return hmac.compare_digest(signature_of(token, timestamp, nonce), signature.lower())


@dataclass(frozen=True, slots=True)
class Event:
    """One callback event: who (openid), what, when, and the parts the engine keeps."""

    openid: str
    kind: str
    at: datetime
    consents: list[tuple[str, str]] = field(default_factory=list)  # (template_id, accept|reject)
    msgid: str | None = None
    status: str | None = None


class BadEvent(ValueError):
    """A body that is not a WeChat event."""


def parse_event(body: bytes) -> Event | None:
    """The event in a callback body; None for a plain message (text, image, …)."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadEvent(f"not XML: {exc}") from None
    if _text(root, "MsgType") != "event":
        return None
    openid = _text(root, "FromUserName")
    kind = _text(root, "Event")
    if not openid or not kind:
        raise BadEvent("event without FromUserName or Event")
    created = _text(root, "CreateTime")
    at = datetime.fromtimestamp(int(created), UTC) if created.isdigit() else now_utc()
    if kind == "subscribe_msg_popup_event":
        consents = [
            (_text(item, "TemplateId"), _text(item, "SubscribeStatusString"))
            for item in root.iterfind("SubscribeMsgPopupEvent/List")
        ]
        return Event(openid, kind, at, consents=[(t, s) for t, s in consents if t and s])
    if kind == "TEMPLATESENDJOBFINISH":
        return Event(openid, kind, at, msgid=_text(root, "MsgID") or None, status=_text(root, "Status"))
    return Event(openid, kind, at)


def _text(node: ET.Element, path: str) -> str:
    found = node.find(path)
    return (found.text or "").strip() if found is not None else ""


def apply_event(engine: Engine, event: Event) -> bool:
    """Keep what the event says; False when it is a kind the engine ignores."""
    with engine.begin() as conn:
        if event.kind in ("subscribe", "unsubscribe"):
            bindings.set_subscribed(conn, event.openid, event.kind == "subscribe", event.at)
        elif event.kind == "subscribe_msg_popup_event":
            for template_id, status in event.consents:
                if status in (bindings.ACCEPTED, bindings.REJECTED):
                    bindings.record_consent(conn, event.openid, template_id, status, event.at)
        elif event.kind == "TEMPLATESENDJOBFINISH" and event.msgid:
            delivery_reports.record_delivery_report(conn, event.msgid, event.status or "", event.at)
        else:
            return False
    return True


class CallbackEndpoint:
    """The Starlette endpoint; the engine database is opened at the first request."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = make_engine(self.database_url)
                bindings.ensure_schema(engine)
                delivery_reports.ensure_schema(engine)
                self._engine = engine
            return self._engine

    async def __call__(self, request: Request) -> Response:
        q = request.query_params
        token = os.environ.get(TOKEN_ENV, "")
        if not signature_ok(token, q.get("signature", ""), q.get("timestamp", ""), q.get("nonce", "")):
            log.warning("wechat_callback_refused", reason="no_token" if not token else "bad_signature")
            return PlainTextResponse("forbidden", status_code=403)
        if request.method == "GET":
            return PlainTextResponse(q.get("echostr", ""))
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("too large", status_code=413)
        try:
            event = parse_event(body)
        except BadEvent as exc:
            log.warning("wechat_callback_unreadable", error=str(exc)[:200])
            return PlainTextResponse("bad request", status_code=400)
        if event is not None:
            kept = await run_in_threadpool(self._apply, event)
            log.info("wechat_event", kind=event.kind, openid=mask_key(event.openid), kept=kept)
        return PlainTextResponse("success")

    def _apply(self, event: Event) -> bool:
        return apply_event(self.engine(), event)


def endpoint(database_url: str) -> Callable[[Request], Awaitable[Response]]:
    """A plain function for a Starlette `Route` (a callable object would be taken for an ASGI app)."""
    callback = CallbackEndpoint(database_url)

    async def wechat_callback(request: Request) -> Response:
        return await callback(request)

    return wechat_callback
