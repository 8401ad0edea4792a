"""The WeChat callback on a running engine's HTTP app (`engine.http.listen`): WeChat's
signature checked (403 otherwise), the GET echo, and the events kept — follow and unfollow,
consent popup answers per template, template delivery results by msgid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from sqlalchemy import create_engine, text

from channels.wechat.callback import signature_of
from support import REPO, free_port, wait_until, write_routes

TOKEN = "callback-token-for-tests"


def _xml(openid: str, event: str, extra: str = "") -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[gh_account]]></ToUserName>"
        f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>1741568400</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{extra}</xml>"
    ).encode()


class Callback:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/wechat/callback"

    def query(self, token: str = TOKEN, **extra: str) -> str:
        timestamp, nonce = "1741568400", "n0nce"
        sig = signature_of(token, timestamp, nonce)
        return urlencode({"signature": sig, "timestamp": timestamp, "nonce": nonce, **extra})

    def call(self, query: str, body: bytes | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"{self.url}?{query}", data=body, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def post(self, body: bytes) -> tuple[int, str]:
        return self.call(self.query(), body)


@pytest.fixture
def engine_with_http(tmp_path: Path) -> Any:
    database = f"sqlite:///{tmp_path}/engine.db"
    port = free_port()
    routes = write_routes(tmp_path, database=database)
    body = routes.read_text(encoding="utf-8")
    routes.write_text(body.replace("engine:\n", f"engine:\n  http: {{listen: 127.0.0.1:{port}}}\n", 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update({"PYTHONPATH": str(REPO), "MCH_LANG": "en", "MCH_WECHAT_CALLBACK_TOKEN": TOKEN})
    log = (tmp_path / "engine.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "run", "--config", str(routes)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    try:
        wait_until(lambda: _answers(port), timeout=60)
        db = create_engine(database)
        yield Callback(port), db, tmp_path / "engine.log"
        db.dispose()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
            return True
    except OSError:
        return False


def _one(db: Any, sql: str, **params: Any) -> Any:
    with db.connect() as conn:
        return conn.execute(text(sql), params).first()


def test_signature_echo_and_events_through_the_running_engine(engine_with_http: Any) -> None:
    cb, db, log_path = engine_with_http

    assert cb.call(cb.query(echostr="hello-wechat")) == (200, "hello-wechat")
    assert cb.call(cb.query(token="wrong-token", echostr="hello-wechat"))[0] == 403
    assert cb.call("echostr=hello-wechat")[0] == 403  # no signature at all
    forged = cb.call(cb.query(token="wrong-token"), _xml("oFORGED000000000000009", "subscribe"))
    assert forged[0] == 403

    assert cb.post(_xml("oUSER0000000000000001", "subscribe")) == (200, "success")
    assert _one(
        db, "SELECT subscribed, source FROM wechat_bindings WHERE openid = 'oUSER0000000000000001'"
    ) == (
        1,
        "callback",
    )
    assert cb.post(_xml("oUSER0000000000000001", "unsubscribe")) == (200, "success")
    row = _one(
        db, "SELECT subscribed, unsubscribed_at FROM wechat_bindings WHERE openid = 'oUSER0000000000000001'"
    )
    assert row[0] == 0 and row[1] is not None
    assert cb.post(_xml("oUSER0000000000000001", "subscribe")) == (200, "success")
    row = _one(
        db, "SELECT subscribed, unsubscribed_at FROM wechat_bindings WHERE openid = 'oUSER0000000000000001'"
    )
    assert tuple(row) == (1, None)

    popup = (
        "<SubscribeMsgPopupEvent>"
        "<List><TemplateId><![CDATA[TPL-REPORT]]></TemplateId>"
        "<SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>"
        "<List><TemplateId><![CDATA[TPL-VISIT]]></TemplateId>"
        "<SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString><PopupScene>2</PopupScene></List>"
        "</SubscribeMsgPopupEvent>"
    )
    assert cb.post(_xml("oUSER0000000000000001", "subscribe_msg_popup_event", popup)) == (200, "success")
    with db.connect() as conn:
        from channels.wechat.bindings import consent_of

        assert consent_of(conn, "oUSER0000000000000001", "TPL-REPORT") == "accept"
        assert consent_of(conn, "oUSER0000000000000001", "TPL-VISIT") == "reject"

    for msgid, status in (("200163836", "success"), ("200163837", "failed:user block")):
        finish = f"<MsgID>{msgid}</MsgID><Status><![CDATA[{status}]]></Status>"
        assert cb.post(_xml("oUSER0000000000000001", "TEMPLATESENDJOBFINISH", finish)) == (200, "success")
    reports = {r[0]: r[1] for r in _rows(db, "SELECT msgid, status FROM wechat_delivery_reports")}
    assert reports == {"200163836": "success", "200163837": "failed:user block"}

    assert cb.post(b"not xml")[0] == 400
    # Nothing of the refused request was kept.
    assert [r[0] for r in _rows(db, "SELECT openid FROM wechat_bindings")] == ["oUSER0000000000000001"]
    assert "oUSER0000000000000001" not in log_path.read_text()


def _rows(db: Any, sql: str) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(text(sql)))
