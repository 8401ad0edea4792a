"""The WeChat API client against the local stand-in: the shared token and each errcode's outcome."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from wechat_standin import SUBSCRIBE_SEND, TEMPLATE_SEND, WechatStandIn

from channels.wechat.api import WechatApi
from channels.wechat.errors import QuotaExhausted, TemplateDataError, TemplateIdRejected, Undeliverable
from channels.wechat.tokens import TOKENS, TokenStore
from core.clock import now_utc
from core.errors import PermanentDeliveryError, TransientDeliveryError
from deadletter.policy import DEAD, RETRY, RetryPolicy
from support import engine_database

ROOT = Path(__file__).resolve().parents[2]
TPL = "TPL_REPORT_READY"
KEYS = {"thing1": "thing", "time2": "time", "character_string3": "character_string"}
FOLLOWER = "oFollower_0000000000000001"
DATA = {"thing1": "检验报告已出", "time2": "2025-03-01 09:30", "character_string3": "R20250301001"}


@pytest.fixture
def wx() -> Iterator[WechatStandIn]:
    with WechatStandIn(templates={TPL: KEYS}) as standin:
        standin.following.add(FOLLOWER)
        yield standin


@pytest.fixture
def api(wx: WechatStandIn, tmp_path: Path) -> Iterator[WechatApi]:
    with engine_database("sqlite", tmp_path) as engine:
        tokens = TokenStore(engine)
        tokens.prepare()
        with WechatApi(wx.base_url, wx.appid, wx.secret, tokens, timeout=5.0) as client:
            yield client


def send(
    api: WechatApi, openid: str = FOLLOWER, data: dict[str, str] | None = None, cmid: str = "n-1"
) -> str:
    return api.send_template(openid, TPL, data or DATA, "https://h.example/r/1", cmid)


def test_a_template_send_reaches_wechat_with_its_values(api: WechatApi, wx: WechatStandIn) -> None:
    msgid = send(api)
    [got] = wx.received
    assert (got.openid, got.template_id, got.data, got.url, got.client_msg_id) == (
        FOLLOWER,
        TPL,
        DATA,
        "https://h.example/r/1",
        "n-1",
    )
    assert msgid == str(got.msgid)
    send(api, cmid="n-2")
    assert wx.calls["/cgi-bin/stable_token"] == 1  # the stored token served the second send


_CHILD = """
import sys, time, pathlib
from core.database import make_engine
from channels.wechat.api import WechatApi
from channels.wechat.tokens import TOKENS, TokenStore
url, base, appid, secret, go = sys.argv[1:]
tokens = TokenStore(make_engine(url))
tokens.prepare()
api = WechatApi(base, appid, secret, tokens)
while not pathlib.Path(go).exists():
    time.sleep(0.005)
print(api.quota("/cgi-bin/message/template/send")["remain"])
"""


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_two_engine_processes_share_one_token(kind: str, tmp_path: Path) -> None:
    """Both processes start with no token at the same moment; WeChat is slow to answer the token
    request, so both are inside the fetch window — yet only one stable_token call happens."""
    with (
        WechatStandIn(templates={TPL: KEYS}, token_delay=0.5) as wx,
        engine_database(kind, tmp_path) as engine,
    ):
        url = engine.url.render_as_string(hide_password=False)
        TokenStore(engine).prepare()
        go = tmp_path / "go"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", _CHILD, url, wx.base_url, wx.appid, wx.secret, str(go)],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        time.sleep(1.5)  # both interpreters started and waiting
        go.touch()
        outputs = [p.communicate(timeout=60) for p in procs]
        for proc, (_out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
        assert wx.calls["/cgi-bin/stable_token"] == 1
        with engine.connect() as conn:
            stored = conn.execute(select(TOKENS.c.token)).scalars().all()
        assert stored == [wx.token]
        assert wx.calls["/cgi-bin/openapi/quota/get"] == 2  # both calls went through with it


def test_a_rejected_token_is_refreshed_once_and_the_send_succeeds(api: WechatApi, wx: WechatStandIn) -> None:
    send(api, cmid="warm-up")
    first = wx.token
    wx.script(TEMPLATE_SEND, [40001])
    send(api, cmid="after-40001")
    assert wx.force_refreshes == 1
    assert wx.token != first
    assert [r.client_msg_id for r in wx.received] == ["warm-up", "after-40001"]


def test_an_expired_token_is_fetched_again(api: WechatApi, wx: WechatStandIn) -> None:
    send(api, cmid="a")
    wx.expire_token()  # WeChat says 42001 although our row still looks valid
    send(api, cmid="b")
    assert len(wx.received) == 2
    assert wx.tokens_issued == 2


def test_a_token_refused_twice_is_not_refreshed_forever(api: WechatApi, wx: WechatStandIn) -> None:
    wx.script(TEMPLATE_SEND, [40001, 40001])
    with pytest.raises(TransientDeliveryError):
        send(api)
    assert wx.force_refreshes == 1
    assert wx.received == []


def test_busy_is_transient_and_the_policys_retry_succeeds(api: WechatApi, wx: WechatStandIn) -> None:
    wx.script(TEMPLATE_SEND, [-1])
    with pytest.raises(TransientDeliveryError) as caught:
        send(api)
    assert wx.received == []
    assert RetryPolicy().decide(caught.value, attempts=1) == (RETRY, 10.0)
    send(api)  # the retry
    assert len(wx.received) == 1


def test_no_answer_or_a_gateway_error_is_transient(api: WechatApi, wx: WechatStandIn) -> None:
    wx.fail_next(TEMPLATE_SEND, drop=True)
    wx.fail_next(TEMPLATE_SEND, status=502)
    for _ in range(2):
        with pytest.raises(TransientDeliveryError):
            send(api)
    send(api)
    assert len(wx.received) == 1


def test_daily_quota_used_up_pauses_until_midnight_in_shanghai(api: WechatApi, wx: WechatStandIn) -> None:
    wx.daily_limit = 1
    send(api, cmid="first")
    before = now_utc()
    with pytest.raises(QuotaExhausted) as caught:
        send(api, cmid="second")
    shanghai = ZoneInfo("Asia/Shanghai")
    midnight = datetime.combine(
        before.astimezone(shanghai).date() + timedelta(days=1), datetime.min.time(), shanghai
    )
    assert caught.value.until == midnight
    assert isinstance(caught.value, TransientDeliveryError)
    assert caught.value.retry_after == pytest.approx((midnight - before).total_seconds(), abs=5)
    assert RetryPolicy().decide(caught.value, attempts=1)[0] == RETRY
    assert api.quota(TEMPLATE_SEND) == {"daily_limit": 1, "used": 1, "remain": 0}


def test_a_value_wechat_refuses_is_a_dead_letter(api: WechatApi, wx: WechatStandIn) -> None:
    too_long = {**DATA, "thing1": "这是一段超过二十个字符的检验报告说明文字内容啊啊"}
    with pytest.raises(TemplateDataError) as caught:
        send(api, data=too_long)
    assert caught.value.code == 47003
    assert "thing1" in str(caught.value)
    assert RetryPolicy().decide(caught.value, attempts=1) == (DEAD, None)
    assert wx.received == []


@pytest.mark.parametrize(
    ("code", "reason"), [(43004, "not_following"), (43101, "no_consent"), (40003, "invalid_openid")]
)
def test_a_recipient_who_cannot_receive_is_undeliverable_without_retry(
    api: WechatApi, wx: WechatStandIn, code: int, reason: str
) -> None:
    wx.script(TEMPLATE_SEND, [code])
    with pytest.raises(Undeliverable) as caught:
        send(api)
    assert (caught.value.code, caught.value.reason) == (code, reason)
    assert wx.calls[TEMPLATE_SEND] == 1
    assert RetryPolicy().decide(caught.value, attempts=1) == (DEAD, None)


def test_the_stand_in_answers_the_undeliverable_codes_on_its_own(api: WechatApi, wx: WechatStandIn) -> None:
    codes = []
    for call in (
        lambda: send(api, openid="oNotFollowing_000000000001"),
        lambda: send(api, openid="bad openid!"),
        lambda: api.send_subscribe(FOLLOWER, TPL, DATA, "pages/report"),
    ):
        with pytest.raises(Undeliverable) as caught:
            call()
        codes.append(caught.value.code)
    assert codes == [43004, 40003, 43101]
    wx.consent.add((FOLLOWER, TPL))
    api.send_subscribe(FOLLOWER, TPL, DATA, "pages/report")
    assert [(r.path, r.url) for r in wx.received] == [(SUBSCRIBE_SEND, "pages/report")]


def test_template_id_refused_once_is_tried_again(api: WechatApi, wx: WechatStandIn) -> None:
    wx.script(TEMPLATE_SEND, [40037])
    send(api)
    assert wx.calls[TEMPLATE_SEND] == 2
    assert len(wx.received) == 1


def test_template_id_refused_twice_is_a_dead_letter_naming_it(api: WechatApi, wx: WechatStandIn) -> None:
    with pytest.raises(TemplateIdRejected) as caught:
        api.send_template(FOLLOWER, "TPL_UNKNOWN", DATA, None, "n-1")
    assert isinstance(caught.value, PermanentDeliveryError)
    assert "TPL_UNKNOWN" in str(caught.value)
    assert wx.calls[TEMPLATE_SEND] == 2


def test_quota_is_read(api: WechatApi, wx: WechatStandIn) -> None:
    send(api)
    send(api, cmid="n-2")
    assert api.quota(TEMPLATE_SEND) == {"daily_limit": 100_000, "used": 2, "remain": 99_998}
    assert api.quota(SUBSCRIBE_SEND)["used"] == 0


def test_the_secret_and_token_never_appear_in_an_error(api: WechatApi, wx: WechatStandIn) -> None:
    send(api)
    wx.fail_next(TEMPLATE_SEND, drop=True)
    with pytest.raises(TransientDeliveryError) as caught:
        send(api)
    assert wx.token is not None
    assert wx.token not in str(caught.value)
    assert wx.secret not in json.dumps(str(caught.value))
