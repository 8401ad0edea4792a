"""A small typed client for the handful of WeChat endpoints the notifier uses.

    api = WechatApi("https://api.weixin.qq.com", appid, secret, TokenStore(engine))
    msgid = api.send_template(openid, template_id, {"thing1": "检验报告"}, url, client_msg_id)

Each call reads the shared token (channels/wechat/tokens.py) and turns WeChat's errcode into
the engine's errors (channels/wechat/errors.py): 40001/40014/42001 refresh the token and try
once more; 40037 is tried once more (WeChat reports it now and then for valid ids); the others
are raised for the caller and the retry policy. Why not wechatpy: docs/design.md.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx

from channels.wechat.errors import (
    QuotaExhausted,
    TemplateDataError,
    TemplateIdRejected,
    TokenRefused,
    Undeliverable,
    WechatBusy,
    WechatError,
    WechatUnreachable,
    next_quota_reset,
)
from channels.wechat.tokens import TokenStore
from core.clock import now_utc

__all__ = ["TOKEN_ERRORS", "WechatApi"]

TOKEN_ERRORS = frozenset({40001, 40014, 42001})  # invalid, malformed, expired token
_UNDELIVERABLE = frozenset(Undeliverable.REASONS)


class WechatApi:
    def __init__(
        self,
        base_url: str,
        appid: str,
        secret: str,
        tokens: TokenStore,
        *,
        timeout: float = 10.0,
        now: Callable[[], datetime] = now_utc,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self._secret = secret
        self.tokens = tokens
        self._now = now
        self._http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WechatApi:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # The endpoints ---------------------------------------------------------------------------

    def send_template(
        self, openid: str, template_id: str, data: dict[str, str], url: str | None, client_msg_id: str
    ) -> str:
        """A template message to a follower; WeChat's msgid (for TEMPLATESENDJOBFINISH)."""
        body: dict[str, Any] = {
            "touser": openid,
            "template_id": template_id,
            "data": _values(data),
            "client_msg_id": client_msg_id,
        }
        if url:
            body["url"] = url
        answer = self._call("cgi-bin/message/template/send", body, template_id=template_id)
        return str(answer["msgid"])

    def send_subscribe(self, openid: str, template_id: str, data: dict[str, str], page: str | None) -> None:
        """A subscribe notice (needs the user's consent to this template)."""
        body: dict[str, Any] = {"touser": openid, "template_id": template_id, "data": _values(data)}
        if page:
            body["page"] = page
        self._call("cgi-bin/message/subscribe/bizsend", body, template_id=template_id)

    def quota(self, cgi_path: str) -> dict[str, Any]:
        """The daily quota of one API, e.g. "/cgi-bin/message/template/send":
        {"daily_limit": …, "used": …, "remain": …}."""
        answer = self._call("cgi-bin/openapi/quota/get", {"cgi_path": cgi_path})
        return dict(answer["quota"])

    # Token and errors -----------------------------------------------------------------------

    def _fetch_token(self, force_refresh: bool) -> tuple[str, float]:
        body = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self._secret,
            "force_refresh": force_refresh,
        }
        answer = self._post("cgi-bin/stable_token", body, params=None)
        code = int(answer.get("errcode", 0) or 0)
        if code:
            raise self._error(code, str(answer.get("errmsg", "")), None)
        return str(answer["access_token"]), float(answer["expires_in"])

    def _call(self, path: str, body: dict[str, Any], *, template_id: str | None = None) -> dict[str, Any]:
        token = self.tokens.current(self.appid, self._fetch_token)
        refreshed = template_retried = False
        while True:
            answer = self._post(path, body, params={"access_token": token})
            code = int(answer.get("errcode", 0) or 0)
            if code == 0:
                return answer
            if code in TOKEN_ERRORS and not refreshed:
                refreshed = True
                token = self.tokens.refresh(self.appid, token, self._fetch_token)
                continue
            if code == 40037 and not template_retried:
                template_retried = True
                continue
            raise self._error(code, str(answer.get("errmsg", "")), template_id)

    def _error(self, code: int, message: str, template_id: str | None) -> Exception:
        if code in _UNDELIVERABLE:
            return Undeliverable(code, message)
        if code == 47003:
            return TemplateDataError(code, message)
        if code == 40037:
            return TemplateIdRejected(code, message, template_id or "")
        if code == 45009:
            now = self._now()
            return QuotaExhausted(code, message, next_quota_reset(now), now)
        if code == -1:
            return WechatBusy(code, message)
        if code in TOKEN_ERRORS:
            return TokenRefused(code, message)
        return WechatError(code, message)

    def _post(self, path: str, body: dict[str, Any], *, params: dict[str, str] | None) -> dict[str, Any]:
        url = f"{self.base_url}/{path}"
        try:
            response = self._http.post(url, json=body, params=params)
        except httpx.HTTPError as exc:
            # The exception's own text may carry the URL with the token: name the kind only.
            raise WechatUnreachable(f"WeChat API {path}: {type(exc).__name__}") from None
        if response.status_code != 200:
            raise WechatUnreachable(f"WeChat API {path}: HTTP {response.status_code}")
        try:
            answer = response.json()
        except ValueError:
            raise WechatUnreachable(f"WeChat API {path}: answer is not JSON") from None
        if not isinstance(answer, dict):
            raise WechatUnreachable(f"WeChat API {path}: answer is not a JSON object")
        return answer


def _values(data: dict[str, str]) -> dict[str, dict[str, str]]:
    return {key: {"value": value} for key, value in data.items()}
