"""A silent feed's alert seen on the dashboard in headless Chromium: it opens when the feed
has been quiet longer than its `silent_after`, shows at the top of the overview and on
/alerts, and closes when a message arrives over MLLP, moving to the past alerts.

The engine runs in the test process (support.RunningEngine) with its `alerts` channel; the
alert rules judge by the channel's clock, which the test holds still and moves on itself,
so the feed is "silent" for exactly as long as the test says. Everything else — the engine's
heartbeats, the journal's times, the dashboard — keeps the real clock; the fake one stays
within seconds of it, so no process looks down.
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from dashboard_browser import add_user, browser, monitored, require_chromium, serving, signed_in
from test_operator_actions import RETRY, Backend, backend

from core.clock import now_utc
from monitors.alerts.source import AlertSource
from monitors.alerts.store import open_alerts
from monitors.web.access import Role
from support import RunningEngine, adt, wait_until

pytestmark = pytest.mark.slow

__all__ = ["backend"]  # the fixture: embedded SQLite + memory://, and PostgreSQL + RabbitMQ

VIEWER = "值班员"
SILENT_AFTER = timedelta(seconds=8)
ALERTS = f"""alerts:
  silent_after: {SILENT_AFTER.seconds}s
  disk_free_ratio: 0.01     # this test is about a feed, whatever the machine's disk
  disk_free_bytes: 1MiB
  feeds:
    lis_gbk: {{silent: false}}
"""


@dataclass
class HeldClock:
    """A clock that stands still until the test moves it on."""

    at: datetime

    def __call__(self) -> datetime:
        return self.at

    def move_to(self, when: datetime) -> None:
        assert when >= self.at, "this clock only goes forward"
        self.at = when


def alerting_routes(backend: Backend, directory: Path) -> Path:
    """The test routes with an `alerts` channel looking every 0.2 s, `hospital` silent after
    SILENT_AFTER."""
    routes = backend.routes(directory, extra=RETRY + ALERTS)
    text = routes.read_text(encoding="utf-8")
    routes.write_text(text.replace("channels:\n", "channels:\n  alerts: {type: alerts, every: 0.2s}\n", 1))
    return routes


def send(engine: RunningEngine, payload: bytes) -> bytes | None:
    """Over MLLP from a thread of its own: Playwright's sync API holds this thread's loop."""
    with ThreadPoolExecutor(1) as pool:
        [ack] = pool.submit(engine.send, [payload]).result(60)
    return ack


def test_a_silent_feed_alert_opens_and_closes_on_the_dashboard(backend: Backend, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    require_chromium()
    with RunningEngine(alerting_routes(backend, tmp_path)) as engine:
        clock = HeldClock(now_utc())
        [source] = [s for s in engine.runtime.sources if isinstance(s, AlertSource)]
        source.clock = clock
        looked = clock.at.isoformat(timespec="seconds")
        wait_until(lambda: source.state()["last_look_at"] == looked, timeout=10)
        with monitored(engine), serving(engine.settings) as base, browser() as chromium:
            add_user(engine.settings, VIEWER, Role.viewer)
            page = signed_in(chromium, base, VIEWER)
            top = page.locator('#alerting li.alert[data-rule="feed_silent"][data-subject="hospital"]')
            expect(page.locator("#channels")).to_be_visible()
            expect(page.locator("#alerting li.alert")).to_have_count(0)
            assert open_alerts(engine.journal) == []

            # Real time passes the limit, the held clock does not: the rules judge by their clock.
            wait_until(lambda: now_utc() > clock.at + SILENT_AFTER + timedelta(seconds=1), 30, interval=0.2)
            time.sleep(0.6)  # three more looks
            assert open_alerts(engine.journal) == []

            # The feed has now been quiet longer than its limit: the top box says so, by itself.
            clock.move_to(clock.at + SILENT_AFTER + timedelta(seconds=1))
            expect(top).to_be_visible(timeout=20_000)  # htmx refreshes the live part every 5 s
            expect(top).to_contain_text("接口无消息")
            expect(top).to_contain_text("接口 hospital 已")

            page.click("nav >> text=告警")
            opened = page.locator('#open-alerts tr[data-rule="feed_silent"][data-subject="hospital"]')
            expect(opened).to_have_count(1)
            expect(opened.locator(".badge")).to_have_text("严重")
            expect(opened.locator(".summary")).to_have_text(
                re.compile(r"^接口 hospital 已 \d+s 未收到消息（上限 8s）$")
            )
            expect(page.locator("#past-alerts tr[data-rule]")).to_have_count(0)

            # A message on the feed, then the clock a second past it: the alert resolves.
            ack = send(engine, adt("AL-1", "0010077001"))
            assert b"MSA|AA" in (ack or b"")
            clock.move_to(now_utc() + timedelta(seconds=1))

            past = page.locator('#past-alerts tr[data-rule="feed_silent"][data-subject="hospital"]')
            expect(past).to_have_count(1, timeout=20_000)  # the alerts page refreshes itself too
            expect(past.locator("td.resolved")).to_have_text(re.compile(r"\d"))
            expect(page.locator("#open-alerts tr[data-rule]")).to_have_count(0)
            page.click("a.lang")
            expect(past.locator(".summary")).to_have_text(
                re.compile(r"^Feed hospital silent for \d+s \(limit 8s\)$")
            )

            page.click("nav >> text=Overview")
            expect(page.locator("#channels")).to_be_visible()
            expect(page.locator("#alerting li.alert")).to_have_count(0)
            answer = page.request.get(base + "/api/alerts").json()
            assert answer["open"] == []
            assert [(a["rule"], a["subject"], a["state"]) for a in answer["recent"]] == [
                ("feed_silent", "hospital", "resolved")
            ]
            assert page.csp_refusals == []
