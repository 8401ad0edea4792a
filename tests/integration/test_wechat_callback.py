"""The WeChat callback on a running engine's HTTP app (`engine.http.listen`): WeChat's
signature checked (403 otherwise), the GET echo, and the events kept — follow and unfollow,
consent popup answers per template, template delivery results by msgid; safe mode's
encrypted bodies (encrypted here as WeChat does, tests/wechat_encrypt.py); stale and
repeated requests."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import wechat_encrypt as wx
from sqlalchemy import create_engine, text

from channels.wechat.callback import signature_of
from support import REPO, free_port, wait_until, write_routes

TOKEN = "callback-token-for-tests"


_CREATED = itertools.count(1741568400)  # each event its own CreateTime, as WeChat's are


def _fields(openid: str, event: str, extra: str = "", created: int | None = None) -> str:
    created = next(_CREATED) if created is None else created
    return (
        f"<FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{created}</CreateTime>"
        f"<MsgType><![CDATA[event]]></MsgType><Event><![CDATA[{event}]]></Event>{extra}"
    )


def _xml(openid: str, event: str, extra: str = "", created: int | None = None) -> bytes:
    fields = _fields(openid, event, extra, created)
    return f"<xml><ToUserName><![CDATA[gh_account]]></ToUserName>{fields}</xml>".encode()


class Callback:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/wechat/callback"

    def query(self, token: str = TOKEN, timestamp: str | None = None, nonce: str = "", **extra: str) -> str:
        """A query signed as WeChat signs it: now, with a nonce of its own unless given."""
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or uuid.uuid4().hex[:10]
        sig = signature_of(token, timestamp, nonce)
        return urlencode({"signature": sig, "timestamp": timestamp, "nonce": nonce, **extra})

    def post_encrypted(
        self, encrypt_text: str, *, plain: str = "", signed: str | None = None, nonce: str = ""
    ) -> tuple[int, str]:
        """A safe-mode POST: `msg_signature` over `signed` (default the body's own `Encrypt`)."""
        timestamp, nonce = str(int(time.time())), nonce or uuid.uuid4().hex[:10]
        msg_sig = wx.msg_signature(TOKEN, timestamp, nonce, encrypt_text if signed is None else signed)
        query = self.query(timestamp=timestamp, nonce=nonce, encrypt_type="aes", msg_signature=msg_sig)
        return self.call(query, wx.envelope(encrypt_text, plain))

    def call(self, query: str, body: bytes | None = None) -> tuple[int, str]:
        request = urllib.request.Request(f"{self.url}?{query}", data=body, method="POST" if body else "GET")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def post(self, body: bytes) -> tuple[int, str]:
        return self.call(self.query(), body)


def _engine_files(tmp_path: Path, **env_extra: str) -> tuple[str, int, Path, dict[str, str]]:
    database = f"sqlite:///{tmp_path}/engine.db"
    port = free_port()
    routes = write_routes(tmp_path, database=database)
    body = routes.read_text(encoding="utf-8")
    routes.write_text(body.replace("engine:\n", f"engine:\n  http: {{listen: 127.0.0.1:{port}}}\n", 1))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update({"PYTHONPATH": str(REPO), "MCH_LANG": "en", "MCH_WECHAT_CALLBACK_TOKEN": TOKEN, **env_extra})
    return database, port, routes, env


@contextmanager
def _running_engine(tmp_path: Path, **env_extra: str) -> Iterator[tuple[Callback, Any, Path]]:
    database, port, routes, env = _engine_files(tmp_path, **env_extra)
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


@pytest.fixture
def engine_with_http(tmp_path: Path) -> Any:
    with _running_engine(tmp_path) as running:
        yield running


@pytest.fixture
def engine_in_safe_mode(tmp_path: Path) -> Any:
    with _running_engine(
        tmp_path, MCH_WECHAT_ENCODING_AES_KEY=wx.AES_KEY, MCH_WECHAT_APPID=wx.APPID
    ) as running:
        yield running


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


def _openids(db: Any) -> list[str]:
    return sorted(r[0] for r in _rows(db, "SELECT openid FROM wechat_bindings"))


def test_safe_mode_opens_good_bodies_and_refuses_every_bad_one(engine_in_safe_mode: Any) -> None:
    cb, db, log_path = engine_in_safe_mode
    good = wx.encrypt(_xml("oSAFE0000000000000001", "subscribe"))
    assert cb.post_encrypted(good) == (200, "success")
    assert _openids(db) == ["oSAFE0000000000000001"]

    # Compatible mode: the plaintext fields beside `Encrypt` are not what counts.
    decoy = _fields("oDECOY000000000000009", "subscribe")
    inner = wx.encrypt(_xml("oSAFE0000000000000002", "subscribe"))
    assert cb.post_encrypted(inner, plain=decoy) == (200, "success")
    assert _openids(db) == ["oSAFE0000000000000001", "oSAFE0000000000000002"]

    unpadded = wx.frame(_xml("oBAD4", "subscribe"))
    unpadded += b"x" * (-len(unpadded) % 32)  # whole blocks, then a pad byte of 0
    bad = {
        "msg_signature over another body": (
            cb.post_encrypted(wx.encrypt(_xml("oBAD1", "subscribe")), signed=good),
            403,
        ),
        "another account's appid": (
            cb.post_encrypted(wx.encrypt(_xml("oBAD2", "subscribe"), appid="wx0000000000000000")),
            403,
        ),
        "another key": (cb.post_encrypted(wx.encrypt(_xml("oBAD3", "subscribe"), key=wx.OTHER_KEY)), 400),
        "bad padding": (cb.post_encrypted(wx.aes_cbc(wx.AES_KEY, unpadded + bytes(32))), 400),
        "plaintext with a key set": (cb.post(_xml("oBAD5", "subscribe")), 403),
    }
    for what, ((status, _body), expected) in bad.items():
        assert status == expected, what
    assert _openids(db) == ["oSAFE0000000000000001", "oSAFE0000000000000002"]
    logged = log_path.read_text()
    assert wx.AES_KEY not in logged and "oSAFE0000000000000001" not in logged
    for reason in ("bad_msg_signature", "wrong_appid", "plaintext_with_aes_key"):
        assert reason in logged


def test_without_the_key_compatible_mode_reads_its_plaintext_copy_and_safe_mode_is_refused(
    engine_with_http: Any,
) -> None:
    """The switch-over of docs/wechat.md: the account goes to compatible mode before the engine
    has the key, and no event is lost meanwhile."""
    cb, db, log_path = engine_with_http
    plain = _fields("oCOMPAT00000000000001", "subscribe")
    hidden = wx.encrypt(_xml("oHIDDEN00000000000001", "subscribe"))
    assert cb.post_encrypted(hidden, plain=plain) == (200, "success")
    assert cb.post_encrypted(wx.encrypt(_xml("oHIDDEN00000000000002", "subscribe")))[0] == 403
    assert _openids(db) == ["oCOMPAT00000000000001"]
    assert "no_aes_key" in log_path.read_text()


def test_stale_and_repeated_requests(engine_with_http: Any) -> None:
    cb, db, _log = engine_with_http
    user = "oREPLAY00000000000001"
    stale = str(int(time.time()) - 400)
    assert cb.call(cb.query(timestamp=stale), _xml("oSTALE000000000000001", "subscribe"))[0] == 403
    assert cb.call(cb.query(timestamp=stale, echostr="x"))[0] == 403
    ahead = str(int(time.time()) + 400)
    assert cb.call(cb.query(timestamp=ahead), _xml("oSTALE000000000000002", "subscribe"))[0] == 403

    subscribe = _xml(user, "subscribe")
    first = cb.query()
    assert cb.call(first, subscribe) == (200, "success")
    assert cb.post(_xml(user, "unsubscribe")) == (200, "success")
    # WeChat's retry of the subscribe (same query, or same event under a new nonce), or a
    # captured query sent again with another body: answered `success` (WeChat would retry a
    # refusal) but not applied — she stays unsubscribed.
    assert cb.call(first, subscribe) == (200, "success")
    assert cb.post(subscribe) == (200, "success")
    assert cb.call(first, _xml(user, "subscribe")) == (200, "success")
    row = _one(db, "SELECT subscribed FROM wechat_bindings WHERE openid = :o", o=user)
    assert row[0] == 0
    assert _openids(db) == [user]  # nothing of the stale requests was kept


def test_a_malformed_key_stops_check_and_start_without_being_shown(tmp_path: Path) -> None:
    _database, _port, routes, env = _engine_files(tmp_path, MCH_WECHAT_ENCODING_AES_KEY=wx.AES_KEY[:40])
    for command in ("check", "run"):
        done = subprocess.run(
            [sys.executable, "-m", "engine.cli", command, "--config", str(routes)],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode in (1, 2), command
        assert "MCH_WECHAT_ENCODING_AES_KEY must be 43 characters" in done.stderr + done.stdout, command
        assert wx.AES_KEY[:40] not in done.stderr + done.stdout
