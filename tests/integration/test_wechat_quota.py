"""WeChat's daily quota and the account's send rate, shared by every engine process.

Two destination instances on the same engine database stand for two engine processes: each
has its own database engine and its own API client, and talks to the WeChat stand-in.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from faults.engine_process import mch
from sqlalchemy import inspect, select
from wechat_standin import QUOTA_GET, TEMPLATE_SEND, WechatStandIn

from channels.wechat import ledger, quota
from channels.wechat.api import WechatApi
from channels.wechat.destination import WechatSink
from channels.wechat.errors import QuotaExhausted, QuotaPaused, TemplateDataError
from channels.wechat.monitoring import quota_snapshots, send_counts
from channels.wechat.settings import WechatDestination
from channels.wechat.tokens import TokenStore
from core.database import make_engine
from core.settings import load_settings
from engine.live_reload import compile_routes
from engine.mapping_trial import try_file
from support import ENGINE_LOG, REPO, engine_database, shipped_routes_copy, wait_until

SHANGHAI = ZoneInfo("Asia/Shanghai")
SHIPPED = load_settings(REPO / "routes.yaml", env={})
SAMPLE = REPO / "mappings/lis/samples/003_ORU-R01_utf-8__lis-blood-routine.hl7"
MOTHER = "oMother0000000000000001"
MOTHER_ID_CARD = "500112199403151525"
TEMPLATES = {"TPL_REPORT_READY": {"thing1": "thing", "time2": "time"}}


class OneMother:
    """Every lab result's person is bound to MOTHER."""

    def openids_for(self, person_ref: dict[str, Any]) -> list[str]:
        return [MOTHER] if person_ref.get("id_card") == MOTHER_ID_CARD else []

    def staff_openids(self, role: str) -> list[str]:
        return []


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def lab_results(count: int, start: int = 0) -> list[dict[str, Any]]:
    """`count` different lab results of the mother (one notice each)."""
    router = compile_routes(SHIPPED).router
    trials = try_file(SAMPLE.read_bytes(), SHIPPED, router, "hospital")
    [envelope] = [e for t in trials for e in t.envelopes if e["record_type"] == "LabResult"]
    return [{**envelope, "record_id": f"{envelope['record_id']}#{i}"} for i in range(start, start + count)]


def daytime() -> datetime:
    """Today 11:00 in Shanghai: outside quiet hours, before the quota resets at midnight."""
    today = datetime.now(UTC).astimezone(SHANGHAI).date()
    return datetime.combine(today, datetime.min.time(), SHANGHAI) + timedelta(hours=11)


@pytest.fixture
def wx() -> Iterator[WechatStandIn]:
    with WechatStandIn(templates=TEMPLATES) as standin:
        standin.following.add(MOTHER)
        yield standin


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    with engine_database(request.param, tmp_path) as engine:
        ledger.ensure_schema(engine)
        yield engine


class Process:
    """One engine process's `wechat_patient` destination: its own database engine and client."""

    def __init__(self, url: str, wx: WechatStandIn, clock: Clock, **settings: Any) -> None:
        self.engine = make_engine(url)
        tokens = TokenStore(self.engine)
        tokens.prepare()
        self.api = WechatApi(wx.base_url, wx.appid, wx.secret, tokens, now=clock)
        base = SHIPPED.destinations["wechat_patient"]
        assert isinstance(base, WechatDestination)
        window = settings.pop("rate_window", 60.0)
        self.sink = WechatSink(
            "wechat_patient",
            base.model_copy(update=settings),
            self.engine,
            SHANGHAI,
            sender=self.api,
            recipients=OneMother(),
            clock=clock,
            appid=wx.appid,
            rate_window=window,
        )

    def close(self) -> None:
        self.sink.close()
        self.api.close()
        self.engine.dispose()


@pytest.fixture
def processes(db: Any, wx: WechatStandIn) -> Iterator[tuple[Process, Process, Clock]]:
    url = db.url.render_as_string(hide_password=False)
    clock = Clock(daytime())
    first, second = Process(url, wx, clock), Process(url, wx, clock)
    yield first, second, clock
    first.close()
    second.close()


def notice_row(db: Any, record_id: str) -> dict[str, Any]:
    with db.connect() as conn:
        found = conn.execute(select(ledger.notices).where(ledger.notices.c.record_id == record_id))
        return dict(found.mappings().one())


# --------------------------------------------------------------------------- 45009


def test_a_45009_pauses_every_process_until_the_quota_resets_and_alerts_once(
    processes: tuple[Process, Process, Clock], wx: WechatStandIn, db: Any
) -> None:
    first, second, clock = processes
    one, two, three, four = lab_results(4)
    wx.daily_limit = 1
    first.sink.store([one])
    logged = ENGINE_LOG.mark()
    with pytest.raises(QuotaExhausted) as refused:
        first.sink.store([two])
    until = refused.value.until
    assert until == datetime.combine(clock.now.date() + timedelta(days=1), datetime.min.time(), SHANGHAI)
    assert notice_row(db, two["record_id"])["errcode"] == 45009
    calls = wx.calls[TEMPLATE_SEND]

    # The other process never got the 45009, yet sends nothing; nor does the first, again.
    for sink, envelope in ((second.sink, three), (first.sink, four), (second.sink, two)):
        with pytest.raises(QuotaPaused) as paused:
            sink.store([envelope])
        assert paused.value.until == until
        assert paused.value.retry_after == (until - clock.now).total_seconds()
    assert wx.calls[TEMPLATE_SEND] == calls

    [alert] = ENGINE_LOG.events(logged, "wechat_quota_exhausted")
    assert alert["level"] == "error"
    assert (alert["destination"], alert["api"]) == ("wechat_patient", TEMPLATE_SEND)
    assert datetime.fromisoformat(alert["until"]) == until
    with db.begin() as conn:  # the same pause recorded again (another process's 45009): no new alert
        assert not quota.record_pause(conn, wx.appid, TEMPLATE_SEND, until)

    # Midnight in Shanghai: WeChat's count starts again, and so does sending, in both processes.
    wx.new_day()
    wx.daily_limit = 10
    clock.now = until + timedelta(hours=9)
    second.sink.store([three])
    first.sink.store([two])
    assert [r.msgid for r in wx.received] == [
        int(notice_row(db, e["record_id"])["msgid"]) for e in (one, three, two)
    ]
    assert notice_row(db, two["record_id"])["errcode"] is None  # sent now
    assert ENGINE_LOG.events(logged, "wechat_quota_exhausted") == [alert]


def test_a_paused_api_stays_paused_for_a_process_started_later(
    processes: tuple[Process, Process, Clock], wx: WechatStandIn, db: Any
) -> None:
    first, _second, clock = processes
    wx.daily_limit = 0
    [one, two] = lab_results(2)
    with pytest.raises(QuotaExhausted):
        first.sink.store([one])
    first.close()
    later = Process(db.url.render_as_string(hide_password=False), wx, clock)
    try:
        with pytest.raises(QuotaPaused):
            later.sink.store([two])
    finally:
        later.close()
    assert wx.calls[TEMPLATE_SEND] == 1


# --------------------------------------------------------------------------- rate


def test_two_processes_together_stay_under_max_per_minute(db: Any, wx: WechatStandIn) -> None:
    """Each process sends 5 notices as fast as it can; the account allows 3 per window
    (2 seconds here instead of a minute, to keep the test short)."""
    url = db.url.render_as_string(hide_password=False)
    clock = Clock(daytime())
    window, limit = 2.0, 3
    pair = [Process(url, wx, clock, max_per_minute=limit, rate_window=window) for _ in range(2)]
    batches = [lab_results(5, 0), lab_results(5, 5)]
    try:
        while time.time() % window > 0.2:  # start just after a window opens
            time.sleep(0.02)
        threads = [
            threading.Thread(target=p.sink.store, args=(batch,))
            for p, batch in zip(pair, batches, strict=True)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        for p in pair:
            p.close()
    assert len(wx.received) == 10
    per_window = Counter(int(r.at // window) for r in wx.received)
    assert max(per_window.values()) == limit, per_window
    assert len(per_window) == 4  # 3 + 3 + 3 + 1


# --------------------------------------------------------------------------- read for the monitors


def test_errcodes_are_counted_per_destination(
    processes: tuple[Process, Process, Clock], wx: WechatStandIn, db: Any
) -> None:
    first, _second, _clock = processes
    sent, not_following, refused = lab_results(3)
    first.sink.store([sent])
    wx.following.discard(MOTHER)
    first.sink.store([not_following])  # 43004: undeliverable, done
    wx.following.add(MOTHER)
    wx.script(TEMPLATE_SEND, [47003])
    with pytest.raises(TemplateDataError):
        first.sink.store([refused])
    [counts] = send_counts(db)
    assert counts.destination == "wechat_patient"
    assert counts.by_status == {"sent": 1, "undeliverable": 1, "failed": 1}
    assert counts.by_errcode == {43004: 1, 47003: 1}


def test_a_ledger_made_before_the_errcode_column_gets_it(db: Any) -> None:
    with db.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE wechat_notices DROP COLUMN errcode")
    ledger.ensure_schema(db)
    ledger.ensure_schema(db)  # and again: nothing more to add
    with db.connect() as conn:
        assert "errcode" in {c["name"] for c in inspect(conn).get_columns("wechat_notices")}


def test_the_quota_is_read_at_start_and_every_quota_every(db: Any, wx: WechatStandIn) -> None:
    url = db.url.render_as_string(hide_password=False)
    process = Process(url, wx, Clock(daytime()), quota_every=0.2)
    wx.daily_limit = 500
    logged = ENGINE_LOG.mark()
    wx.fail_next(QUOTA_GET)
    try:
        process.sink.start()
        wait_until(lambda: quota_snapshots(db), timeout=10)  # the failed read is tried again
        process.sink.store(lab_results(2))
        wait_until(lambda: quota_snapshots(db)[0].used == 2, timeout=10)
    finally:
        process.close()
    [snap] = quota_snapshots(db)
    assert (snap.appid, snap.api, snap.destinations) == (wx.appid, TEMPLATE_SEND, ["wechat_patient"])
    assert (snap.daily_limit, snap.remain, snap.paused_until) == (500, 498, None)
    [failed] = ENGINE_LOG.events(logged, "wechat_quota_read_failed")
    assert (failed["destination"], failed["api"]) == ("wechat_patient", TEMPLATE_SEND)


def _status(routes: Path) -> tuple[int, dict[str, Any], str]:
    as_json = mch(routes, "status", "--json")
    as_text = mch(routes, "status")
    return as_json.returncode, json.loads(as_json.stdout), as_text.stdout


def test_status_shows_the_quota_the_counts_and_a_pause(tmp_path: Path, wx: WechatStandIn) -> None:
    routes = shipped_routes_copy(tmp_path)
    url = f"sqlite:///{tmp_path}/engine.db"
    ledger.ensure_schema(make_engine(url))
    clock = Clock(daytime())
    process = Process(url, wx, clock)
    try:
        wx.daily_limit = 3
        one, two, three, four = lab_results(4)
        process.sink.store([one, two])
        wx.script(TEMPLATE_SEND, [47003])
        with pytest.raises(TemplateDataError):
            process.sink.store([three])
        process.sink.read_quota()
        code, shown, text = _status(routes)
        [mine] = [w for w in shown["wechat"] if w["name"] == "wechat_patient"]
        assert [(q["api"], q["daily_limit"], q["used"], q["remain"]) for q in mine["quota"]] == [
            (TEMPLATE_SEND, 3, 2, 1)
        ]
        assert (mine["sent"], mine["undeliverable"], mine["failed"]) == (2, 0, 1)
        assert mine["by_errcode"] == {"47003": 1} and mine["paused_until"] is None
        assert not any(p.startswith("wechat_quota_exhausted") for p in shown["problems"])
        assert "template:1/3" in text

        wx.new_day()
        wx.daily_limit = 0
        with pytest.raises(QuotaExhausted) as refused:
            process.sink.store([four])
    finally:
        process.close()
    code, shown, text = _status(routes)
    assert code == 1 and shown["ok"] is False
    assert "wechat_quota_exhausted:wechat_patient" in shown["problems"]
    [mine] = [w for w in shown["wechat"] if w["name"] == "wechat_patient"]
    assert datetime.fromisoformat(mine["paused_until"]) == refused.value.until
    assert "WeChat destination wechat_patient used up its daily API quota (45009)" in text
