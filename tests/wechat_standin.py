"""A local stand-in of the WeChat API, for every WeChat test.

    with WechatStandIn(templates={"TPL_REPORT": {"thing1": "thing", "time2": "time"}}) as wx:
        wx.following.add(openid)
        api = WechatApi(wx.base_url, wx.appid, wx.secret, tokens)
        ...
        assert wx.received[0].data == {"thing1": "检验报告", "time2": "2025-03-01 09:30"}

It speaks the endpoints the engine uses, on 127.0.0.1 at a free port, in a thread:
`cgi-bin/stable_token` (the same token to every caller while valid; `force_refresh` issues a
new one and is counted), `cgi-bin/token` (a new token that invalidates the previous one),
`message/template/send`, `message/subscribe/bizsend` and `openapi/quota/get`. It answers as
WeChat does: 40001/42001 for an unknown or expired token, 43004 to a non-follower, 43101
without consent, 40003 for a malformed openid, 40037 for an unknown template, 47003 for a
value its key type refuses, 45009 past the daily limit (`daily_limit`, settable; quota/get
reports the sends it accepted against it, and `new_day()` starts a new day at zero; each
accepted send is in `received` with its time). `script(path, [codes])` makes the next calls to
`path` answer those codes; `fail_next(path, status=…)` answers one call with an HTTP error, or
`drop=True` closes the connection without an answer.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["Received", "WechatStandIn", "key_value_ok"]

TEMPLATE_SEND = "/cgi-bin/message/template/send"
SUBSCRIBE_SEND = "/cgi-bin/message/subscribe/bizsend"
QUOTA_GET = "/cgi-bin/openapi/quota/get"
STABLE_TOKEN = "/cgi-bin/stable_token"
TOKEN = "/cgi-bin/token"

_OPENID = re.compile(r"[A-Za-z0-9_-]{6,64}")
_CJK = re.compile(r"[\u4e00-\u9fff]+")
_ASCII = re.compile(r"[\x21-\x7e]+")
_DATE = r"(?:\d{4}-\d{1,2}-\d{1,2}|\d{4}年\d{1,2}月\d{1,2}日)"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?"
_TIME = re.compile(rf"(?:{_DATE}\s*)?{_CLOCK}(?:\s*~\s*(?:{_DATE}\s*)?{_CLOCK})?|{_DATE}")
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_PHONE = re.compile(r"[+\d][\d\- ]{0,16}")


def key_value_ok(kind: str, value: str) -> bool:
    """WeChat's check of one typed key's value (category templates, 2023 rules)."""
    if not value:
        return False
    if kind == "thing":
        return len(value) <= 20
    if kind == "phrase":
        return len(value) <= 5 and _CJK.fullmatch(value) is not None
    if kind == "character_string":
        return len(value) <= 32 and _ASCII.fullmatch(value) is not None
    if kind == "name":
        return len(value) <= 10
    if kind in ("time", "date"):
        return _TIME.fullmatch(value) is not None
    if kind == "number":
        return len(value) <= 32 and _NUMBER.fullmatch(value) is not None
    if kind == "phone_number":
        return len(value) <= 17 and _PHONE.fullmatch(value) is not None
    return len(value) <= 20  # an unknown kind: WeChat's general 20-character limit


@dataclass(frozen=True)
class Received:
    """One accepted send, as WeChat got it (values without the {"value": …} wrapping)."""

    path: str
    openid: str
    template_id: str
    data: dict[str, str]
    url: str | None
    client_msg_id: str | None
    msgid: int
    at: float = 0.0  # time.time() when accepted


@dataclass
class _Token:
    value: str
    expires: float  # time.monotonic()


@dataclass
class _Failure:
    status: int | None = None
    drop: bool = False


@dataclass
class WechatStandIn:
    templates: dict[str, dict[str, str]] = field(default_factory=dict)
    appid: str = "wx_standin_app"
    secret: str = "standin-secret"
    token_ttl: float = 7200.0
    token_delay: float = 0.0  # seconds stable_token takes to answer (to widen a race)
    daily_limit: int = 100_000

    def __post_init__(self) -> None:
        self.following: set[str] = set()
        self.consent: set[tuple[str, str]] = set()  # (openid, template_id) accepted for subscribe notices
        self.received: list[Received] = []
        self.calls: dict[str, int] = defaultdict(int)  # path → requests seen
        self.tokens_issued = 0
        self.force_refreshes = 0
        self.used: dict[str, int] = defaultdict(int)
        self._scripted: dict[str, deque[int]] = defaultdict(deque)
        self._failures: dict[str, deque[_Failure]] = defaultdict(deque)
        self._token: _Token | None = None
        self._by_client_msg_id: dict[tuple[str, str], tuple[float, int]] = {}
        self._next_msgid = 1_000_000
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # Test controls ---------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start the stand-in first (with WechatStandIn(...) as wx)"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def token(self) -> str | None:
        """The token valid now, if any."""
        with self._lock:
            return self._valid_token()

    def script(self, path: str, codes: list[int]) -> None:
        """The next len(codes) calls to `path` answer these errcodes (0 lets the call through)."""
        with self._lock:
            self._scripted[_norm(path)].extend(codes)

    def fail_next(self, path: str, *, status: int | None = 502, drop: bool = False) -> None:
        """The next call to `path` gets an HTTP error status, or no answer at all (`drop`)."""
        with self._lock:
            self._failures[_norm(path)].append(_Failure(status=None if drop else status, drop=drop))

    def new_day(self) -> None:
        """Midnight in Shanghai: every API's daily count starts again at zero."""
        with self._lock:
            self.used.clear()

    def expire_token(self) -> None:
        """The current token expires now (as after two hours)."""
        with self._lock:
            if self._token is not None:
                self._token.expires = 0.0

    # Server ----------------------------------------------------------------------------------

    def __enter__(self) -> WechatStandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _serve(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw.decode("utf-8")) if raw else {}
                except ValueError:
                    body = None
                outcome = standin._answer(parts.path, query, body)
                if isinstance(outcome, _Failure):
                    if outcome.drop:
                        self.close_connection = True
                        self.connection.close()
                        return
                    self.send_response(outcome.status or 502)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                payload = json.dumps(outcome, ensure_ascii=False).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="wechat-standin", daemon=True
        ).start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    # WeChat's behaviour ----------------------------------------------------------------------

    def _answer(self, path: str, query: dict[str, str], body: Any) -> dict[str, Any] | _Failure:
        if path == STABLE_TOKEN and self.token_delay:
            time.sleep(self.token_delay)  # outside the lock: concurrent callers overlap
        with self._lock:
            self.calls[path] += 1
            if self._failures[path]:
                return self._failures[path].popleft()
            if self._scripted[path]:
                code = self._scripted[path].popleft()
                if code:
                    return _err(code, f"scripted errcode {code}")
            if body is None:
                return _err(47001, "data format error")
            if path == STABLE_TOKEN:
                return self._stable_token(body)
            if path == TOKEN:
                return self._classic_token(query)
            token = query.get("access_token", "")
            if self._token is None or token != self._token.value:
                return _err(40001, "invalid credential, access_token is invalid or not latest")
            if self._token.expires <= time.monotonic():
                return _err(42001, "access_token expired")
            if path == QUOTA_GET:
                return self._quota(body)
            if path in (TEMPLATE_SEND, SUBSCRIBE_SEND):
                return self._send(path, body)
            return _err(48001, "api unauthorized")

    def _valid_token(self) -> str | None:
        if self._token is not None and self._token.expires > time.monotonic():
            return self._token.value
        return None

    def _issue(self) -> _Token:
        self._token = _Token(secrets.token_urlsafe(24), time.monotonic() + self.token_ttl)
        self.tokens_issued += 1
        return self._token

    def _stable_token(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("grant_type") != "client_credential":
            return _err(40002, "invalid grant_type")
        if body.get("appid") != self.appid or body.get("secret") != self.secret:
            return _err(40125, "invalid appsecret")
        if body.get("force_refresh") is True:
            self.force_refreshes += 1
            token = self._issue()
        elif self._valid_token() is None:
            token = self._issue()
        else:
            assert self._token is not None
            token = self._token
        return {"access_token": token.value, "expires_in": max(0, int(token.expires - time.monotonic()))}

    def _classic_token(self, query: dict[str, str]) -> dict[str, Any]:
        if query.get("appid") != self.appid or query.get("secret") != self.secret:
            return _err(40125, "invalid appsecret")
        token = self._issue()  # the previous token stops working at once
        return {"access_token": token.value, "expires_in": int(self.token_ttl)}

    def _quota(self, body: dict[str, Any]) -> dict[str, Any]:
        cgi_path = str(body.get("cgi_path", ""))
        if cgi_path not in (TEMPLATE_SEND, SUBSCRIBE_SEND):
            return _err(76021, "cgi_path not found")
        used = self.used[cgi_path]
        quota = {"daily_limit": self.daily_limit, "used": used, "remain": max(0, self.daily_limit - used)}
        return {"errcode": 0, "errmsg": "ok", "quota": quota}

    def _send(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        openid = str(body.get("touser", ""))
        template_id = str(body.get("template_id", ""))
        if self.used[path] >= self.daily_limit:
            return _err(45009, "reach max api daily quota limit")
        if not _OPENID.fullmatch(openid):
            return _err(40003, "invalid openid")
        keys = self.templates.get(template_id)
        if keys is None:
            return _err(40037, "invalid template_id")
        if path == TEMPLATE_SEND and openid not in self.following:
            return _err(43004, "require subscribe")
        if path == SUBSCRIBE_SEND and (openid, template_id) not in self.consent:
            return _err(43101, "user refuse to accept the msg")
        data = _plain(body.get("data"))
        if data is None or set(data) != set(keys):
            return _err(47003, "argument invalid! data.keys do not match the template")
        for key, kind in keys.items():
            if not key_value_ok(kind, data[key]):
                return _err(47003, f"argument invalid! data.{key}.value invalid")
        client_msg_id = body.get("client_msg_id")
        now = time.monotonic()
        if client_msg_id:
            seen = self._by_client_msg_id.get((openid, str(client_msg_id)))
            if seen is not None and now - seen[0] < 600:
                return {"errcode": 0, "errmsg": "ok", "msgid": seen[1]}  # sent once per 10 minutes
        self._next_msgid += 1
        msgid = self._next_msgid
        if client_msg_id:
            self._by_client_msg_id[(openid, str(client_msg_id))] = (now, msgid)
        self.used[path] += 1
        self.received.append(
            Received(
                path=path,
                openid=openid,
                template_id=template_id,
                data=data,
                url=body.get("url") if path == TEMPLATE_SEND else body.get("page"),
                client_msg_id=str(client_msg_id) if client_msg_id else None,
                msgid=msgid,
                at=time.time(),
            )
        )
        answer: dict[str, Any] = {"errcode": 0, "errmsg": "ok"}
        if path == TEMPLATE_SEND:
            answer["msgid"] = msgid
        return answer


def _plain(data: Any) -> dict[str, str] | None:
    if not isinstance(data, dict):
        return None
    out = {}
    for key, item in data.items():
        if not isinstance(item, dict) or not isinstance(item.get("value"), str):
            return None
        out[str(key)] = item["value"]
    return out


def _err(code: int, message: str) -> dict[str, Any]:
    return {"errcode": code, "errmsg": message}


def _norm(path: str) -> str:
    return "/" + path.lstrip("/")
