"""The WeChat callback endpoint (服务器配置 URL): WeChat's signature checked on every request,
GET answered with its `echostr`, POST events applied to the bindings.

Signature: sha1 of the sorted, concatenated [token, timestamp, nonce] equals `signature`
(query parameters); the token is the one set in the account's server configuration, read
from `MCH_WECHAT_CALLBACK_TOKEN`. Without it, or with a wrong signature, the answer is 403
and nothing is read. A `timestamp` more than 5 minutes from now is refused too, and a request
seen before is answered `success` without being applied again (channels/wechat/replay.py).

Safe and compatible mode (`encrypt_type=aes`): `msg_signature` must cover the body's
`Encrypt`, which is opened with `MCH_WECHAT_ENCODING_AES_KEY` and must name the account's
`MCH_WECHAT_APPID` (channels/wechat/crypto.py); the XML inside is then handled as a
plaintext body is. With the key set, a plaintext body is refused: its signature does not
cover it. Without the key, a compatible-mode body is read from its plaintext copy (as in
plaintext mode) and a safe-mode body, which has none, is refused. Our answer is always the
plain `success`: the engine sends no passive replies, so nothing needs encrypting.

Events (POST, XML):
- `subscribe` / `unsubscribe`: the user follows or leaves; an unsubscribed user gets nothing;
- `subscribe_msg_popup_event`: accept or reject per template, kept in the binding's consents;
- `TEMPLATESENDJOBFINISH`: the delivery result of a template message, by msgid.
Anything else is answered `success` and ignored, as WeChat expects.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

import structlog
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from channels.wechat import bindings, crypto, delivery_reports, replay
from core.clock import now_utc
from core.database import make_engine
from core.errors import StartupError
from core.masking import mask_key
from core.secrets import secret_environment

TOKEN_ENV = "MCH_WECHAT_CALLBACK_TOKEN"
APPID_ENV = "MCH_WECHAT_APPID"
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
    """One callback event: who (openid), what, when, the parts the engine keeps, and WeChat's
    own key for it (FromUserName + CreateTime + Event, with the MsgID of a delivery report)."""

    openid: str
    kind: str
    at: datetime
    key: str = ""
    consents: list[tuple[str, str]] = field(default_factory=list)  # (template_id, accept|reject)
    msgid: str | None = None
    status: str | None = None


class BadEvent(ValueError):
    """A body that is not a WeChat event."""


def _root(body: bytes) -> ET.Element:
    try:
        return ET.fromstring(body)
    except ET.ParseError as exc:
        raise BadEvent(f"not XML: {exc}") from None


def parse_event(body: bytes) -> Event | None:
    """The event in a callback body; None for a plain message (text, image, …)."""
    root = _root(body)
    if _text(root, "MsgType") != "event":
        return None
    openid = _text(root, "FromUserName")
    kind = _text(root, "Event")
    if not openid or not kind:
        raise BadEvent("event without FromUserName or Event")
    created = _text(root, "CreateTime")
    at = datetime.fromtimestamp(int(created), UTC) if created.isdigit() else now_utc()
    msgid = _text(root, "MsgID") or None
    key = f"event:{openid}:{created}:{kind}" + (f":{msgid}" if msgid else "")
    if kind == "subscribe_msg_popup_event":
        consents = [
            (_text(item, "TemplateId"), _text(item, "SubscribeStatusString"))
            for item in root.iterfind("SubscribeMsgPopupEvent/List")
        ]
        return Event(openid, kind, at, key, consents=[(t, s) for t, s in consents if t and s])
    if kind == "TEMPLATESENDJOBFINISH":
        return Event(openid, kind, at, key, msgid=msgid, status=_text(root, "Status"))
    return Event(openid, kind, at, key)


def _text(node: ET.Element, path: str) -> str:
    found = node.find(path)
    return (found.text or "").strip() if found is not None else ""


def apply_event(engine: Engine, event: Event | None, seen_keys: list[str], now: datetime) -> str:
    """Keep what the event says, in the transaction that claims its keys (replay.py):
    `applied`, `ignored` (a kind or message the engine does not keep), or `repeat`."""
    try:
        with engine.begin() as conn:
            if not replay.claim(conn, seen_keys, now):
                return "repeat"
            if event is None:
                return "ignored"
            if event.kind in ("subscribe", "unsubscribe"):
                bindings.set_subscribed(conn, event.openid, event.kind == "subscribe", event.at)
            elif event.kind == "subscribe_msg_popup_event":
                for template_id, status in event.consents:
                    if status in (bindings.ACCEPTED, bindings.REJECTED):
                        bindings.record_consent(conn, event.openid, template_id, status, event.at)
            elif event.kind == "TEMPLATESENDJOBFINISH" and event.msgid:
                delivery_reports.record_delivery_report(conn, event.msgid, event.status or "", event.at)
            else:
                return "ignored"
    except IntegrityError:  # the same request, claimed by another transaction meanwhile
        return "repeat"
    return "applied"


def load_aes_key(env: Mapping[str, str] | None = None) -> bytes | None:
    """The AES key from `MCH_WECHAT_ENCODING_AES_KEY`, or None when unset (plaintext mode);
    a malformed one stops the start, the text naming the variable, never its value."""
    env = secret_environment(env)
    text = env.get(crypto.AES_KEY_ENV, "").strip()
    if not text:
        return None
    try:
        return crypto.parse_aes_key(text)
    except crypto.BadAesKey as exc:
        raise StartupError(str(exc)) from None


class _Refusal(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason
        super().__init__(reason)


class CallbackEndpoint:
    """The Starlette endpoint; the engine database is opened at the first request."""

    def __init__(self, database_url: str, env: Mapping[str, str] | None = None) -> None:
        self.database_url = database_url
        self.aes_key = load_aes_key(env)
        self.appid = secret_environment(env).get(APPID_ENV, "")
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def engine(self) -> Engine:
        with self._lock:
            if self._engine is None:
                engine = make_engine(self.database_url)
                bindings.ensure_schema(engine)
                delivery_reports.ensure_schema(engine)
                replay.ensure_schema(engine)
                self._engine = engine
            return self._engine

    async def __call__(self, request: Request) -> Response:
        q = request.query_params
        token = secret_environment().get(TOKEN_ENV, "")
        timestamp, nonce = q.get("timestamp", ""), q.get("nonce", "")
        if not signature_ok(token, q.get("signature", ""), timestamp, nonce):
            log.warning("wechat_callback_refused", reason="no_token" if not token else "bad_signature")
            return PlainTextResponse("forbidden", status_code=403)
        if not replay.timestamp_fresh(timestamp, now_utc()):
            log.warning("wechat_callback_refused", reason="stale_timestamp")
            return PlainTextResponse("forbidden", status_code=403)
        if request.method == "GET":
            return PlainTextResponse(q.get("echostr", ""))
        body = await request.body()
        if len(body) > MAX_BODY:
            return PlainTextResponse("too large", status_code=413)
        try:
            xml = self._opened(body, token, q)
            event = parse_event(xml)
        except _Refusal as exc:
            log.warning("wechat_callback_refused", reason=exc.reason)
            text = "forbidden" if exc.status == 403 else "bad request"
            return PlainTextResponse(text, status_code=exc.status)
        except BadEvent as exc:
            log.warning("wechat_callback_unreadable", error=str(exc)[:200])
            return PlainTextResponse("bad request", status_code=400)
        keys = [f"nonce:{timestamp}:{nonce}"] + ([event.key] if event is not None else [])
        outcome = await run_in_threadpool(self._apply, event, keys)
        if event is not None:
            log.info("wechat_event", kind=event.kind, openid=mask_key(event.openid), outcome=outcome)
        elif outcome == "repeat":
            log.info("wechat_message_repeat")
        return PlainTextResponse("success")

    def _opened(self, body: bytes, token: str, q: Mapping[str, str]) -> bytes:
        """The plaintext XML of the body; a body that may not be trusted is a `_Refusal`."""
        if q.get("encrypt_type", "").lower() != "aes":
            if self.aes_key is not None:
                raise _Refusal(403, "plaintext_with_aes_key")
            return body
        try:
            root = _root(body)
        except BadEvent:
            raise _Refusal(400, "not_xml") from None
        if self.aes_key is None:
            # Compatible mode before the key is set here: its plaintext copy is what plaintext
            # mode would have sent, trusted as far (the switch-over in docs/wechat.md).
            if root.find("MsgType") is not None:
                return body
            raise _Refusal(403, "no_aes_key")
        encrypt = _text(root, "Encrypt")
        if not encrypt:
            raise _Refusal(400, "no_encrypt")
        stamp = (q.get("timestamp", ""), q.get("nonce", ""))
        if not crypto.msg_signature_ok(token, q.get("msg_signature", ""), *stamp, encrypt):
            raise _Refusal(403, "bad_msg_signature")
        try:
            return crypto.decrypt(self.aes_key, encrypt, self.appid)
        except crypto.Refused as exc:
            raise _Refusal(403 if exc.reason == "wrong_appid" else 400, exc.reason) from None

    def _apply(self, event: Event | None, keys: list[str]) -> str:
        return apply_event(self.engine(), event, keys, now_utc())


def endpoint(database_url: str) -> Callable[[Request], Awaitable[Response]]:
    """A plain function for a Starlette `Route` (a callable object would be taken for an ASGI app)."""
    callback = CallbackEndpoint(database_url)

    async def wechat_callback(request: Request) -> Response:
        return await callback(request)

    return wechat_callback
