"""The dashboard pages in headless Chromium, against a running engine: counters move as
messages arrive over MLLP, a message is found by 身份证号 and opened, a dead letter is
replayed from the page and delivered, a viewer neither sees the operate buttons nor gets
past them by posting, a wrong password is refused, and the browser refuses nothing under
the engine's Content-Security-Policy.

The engine runs in the test process (support.RunningEngine), on the embedded default and on
PostgreSQL + RabbitMQ; the pages are its HTTP app served beside it, login gate and all, and
the users, made with the real user store, sign in through the /login form
(tests/dashboard_browser.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from dashboard_browser import (
    PASSWORD,
    add_user,
    browser,
    browsing,
    log_in,
    monitored,
    require_chromium,
    serving,
    signed_in,
)
from test_operator_actions import Backend, backend, lab, refusing_store

from monitors.web.access import Role
from support import RunningEngine, adt, scalar, wait_until

pytestmark = pytest.mark.slow

OPERATOR, VIEWER = "王芳", "李明"
ID_CARD = "11010519491231002X"
HIS_ID = "0010077001"


__all__ = ["backend"]  # the fixture: embedded SQLite + memory://, and PostgreSQL + RabbitMQ


@dataclass
class Dashboard:
    engine: RunningEngine
    base: str
    chromium: Any
    kind: str

    def send(self, payloads: list[bytes]) -> list[bytes | None]:
        """Over MLLP from a thread of its own: Playwright's sync API holds this thread's loop."""
        with ThreadPoolExecutor(1) as pool:
            return pool.submit(self.engine.send, payloads).result(60)

    def page(self, name: str = OPERATOR) -> Any:
        return signed_in(self.chromium, self.base, name)


@pytest.fixture
def dashboard(backend: Backend, tmp_path: Path) -> Iterator[Dashboard]:
    require_chromium()
    config = backend.routes(tmp_path)
    with (
        RunningEngine(config) as engine,
        monitored(engine),
        serving(engine.settings) as base,
        browser() as chromium,
    ):
        add_user(engine.settings, OPERATOR, Role.operator)
        add_user(engine.settings, VIEWER, Role.viewer)
        yield Dashboard(engine, base, chromium, backend.kind)


def registration(control_id: str) -> bytes:
    return adt(control_id, HIS_ID, extra_ids=f"~{ID_CARD}^^^^ID")


def test_overview_counters_move_as_messages_arrive_without_a_reload(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page(VIEWER)
    page.goto(dashboard.base + "/")
    received = page.locator('tr[data-channel="hospital"] td.received')
    expect(received).to_have_text("0")
    expect(page.locator('tr[data-channel="hospital"] .badge')).to_have_text("运行中")
    page.evaluate("window.__same_page = true")  # gone if the page were loaded again

    acks = dashboard.send([registration("DB-1"), registration("DB-2")])
    assert all(b"MSA|AA" in (a or b"") for a in acks)

    expect(received).to_have_text("2", timeout=20_000)  # htmx refreshes the live part every 5 s
    assert page.evaluate("window.__same_page") is True
    expect(page.locator('tr[data-destination="record_store"] td.delivered')).to_have_text("2", timeout=20_000)
    spark = page.locator('tr[data-channel="hospital"] svg.spark title')
    expect(spark).to_have_text("hospital: 2 / 30 min")
    assert page.csp_refusals == []  # htmx and the style sheet under the engine's own CSP


def test_find_a_message_by_id_card_open_it_and_identifiers_masked_for_a_viewer(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    dashboard.send([registration("DB-FIND-1"), adt("DB-OTHER-1", "0010077999")])
    wait_until(lambda: scalar(dashboard.engine.journal, "select count(*) from journal_deliveries") == 2)

    page = dashboard.page(OPERATOR)
    page.goto(dashboard.base + "/messages")
    page.fill('input[name="identifier"]', ID_CARD)
    page.click('#search button[type="submit"]')
    rows = page.locator("#messages tbody tr[data-message]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("DB-FIND-1")
    rows.first.locator("a").first.click()

    expect(page.locator("h1")).to_have_text(re.compile(r"消息 #\d+"))
    raw = page.locator("#raw")
    expect(raw).to_contain_text(ID_CARD)
    lines = raw.inner_text().strip().splitlines()
    assert [line[:3] for line in lines] == ["MSH", "EVN", "PID"]
    expect(raw.locator('span.field[title="PID-5 Patient Name"]')).to_have_text("王小红^^^^^^L")
    expect(page.locator('#deliveries tr[data-destination="record_store"] .badge')).to_have_text("已投递")
    expect(page.locator("details.record summary")).to_contain_text(f"Person · his:HIS:{HIS_ID}")
    message_url = page.url

    viewer = dashboard.page(VIEWER)
    viewer.goto(message_url)
    raw = viewer.locator("#raw")
    expect(raw).to_contain_text("PID")
    assert ID_CARD not in raw.inner_text() and "王小红" not in raw.inner_text()
    expect(viewer.locator("details.record summary")).to_contain_text("Person · his:HIS:******7001")
    html = viewer.content()
    assert ID_CARD not in html and HIS_ID not in html


def test_replay_a_dead_letter_from_the_page_and_see_it_delivered(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    store = dashboard.engine.store()
    with refusing_store(store, dashboard.kind):
        dashboard.send([lab("DB-LAB-1", "F-DB-1")])
        wait_until(lambda: scalar(dashboard.engine.journal, "select count(*) from dead_letters") == 1, 30)

    page = dashboard.page(OPERATOR)
    page.goto(dashboard.base + "/deadletters")
    row = page.locator("#deadletters tr[data-deadletter]")
    expect(row).to_have_count(1)
    dl_id = row.first.get_attribute("data-deadletter")
    row.first.locator('input[type="checkbox"]').check()
    page.click('button[value="replay"]')
    expect(page.locator("#notice")).to_contain_text("已排队")

    def replayed() -> bool:
        page.goto(f"{dashboard.base}/deadletters/{dl_id}")
        return page.locator("h1 .badge").inner_text() == "已重放"

    wait_until(replayed, 30, interval=0.5)
    page.click("#summary a")  # the journaled message
    expect(page.locator('#deliveries tr[data-destination="record_store"] .badge')).to_have_text(
        "已投递", timeout=30_000
    )
    assert scalar(store, "select count(*) from records where record_id = 'lab:LIS:10:F-DB-1'") == 1
    who = "select actor || ' ' || role || ' ' || source from audit_log where action = 'replay'"
    assert scalar(dashboard.engine.journal, who) == "王芳 operator web:127.0.0.1"
    shown = "select count(*) from audit_log where action = 'show' and actor = '王芳'"
    assert scalar(dashboard.engine.journal, shown) >= 2  # the dead letter and the message, unmasked


def test_a_viewer_sees_no_operate_buttons_and_is_refused_when_posting(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    with refusing_store(dashboard.engine.store(), dashboard.kind):
        dashboard.send([lab("DB-LAB-2", "F-DB-2")])
        wait_until(lambda: scalar(dashboard.engine.journal, "select count(*) from dead_letters") == 1, 30)

    viewer = dashboard.page(VIEWER)
    viewer.goto(dashboard.base + "/deadletters")
    expect(viewer.locator("#deadletters tr[data-deadletter]")).to_have_count(1)
    expect(viewer.locator("#actions")).to_have_count(0)
    expect(viewer.locator('input[type="checkbox"]')).to_have_count(0)
    dl_id = viewer.locator("#deadletters tr[data-deadletter]").first.get_attribute("data-deadletter")
    viewer.goto(f"{dashboard.base}/deadletters/{dl_id}")
    expect(viewer.locator("main button")).to_have_count(0)  # the header keeps only sign-out

    token = viewer.locator('meta[name="csrf-token"]').get_attribute("content")
    assert token
    for action in ("replay", "reprocess", "purge"):
        form = {"id": dl_id, "why": "test", "csrf_token": token}
        answer = viewer.request.post(f"{dashboard.base}/deadletters/{action}", form=form, max_redirects=0)
        assert answer.status == 403, action
        assert answer.text() != "csrf", "refused for the role, not for a missing token"
    assert scalar(dashboard.engine.journal, "select status from dead_letters") == "open"
    assert scalar(dashboard.engine.journal, "select count(*) from operator_requests") in (0, None)


def test_purge_needs_a_reason_and_keeps_it(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    with refusing_store(dashboard.engine.store(), dashboard.kind):
        dashboard.send([lab("DB-LAB-3", "F-DB-3")])
        wait_until(lambda: scalar(dashboard.engine.journal, "select count(*) from dead_letters") == 1, 30)

    page = dashboard.page(OPERATOR)
    page.goto(dashboard.base + "/deadletters")
    page.locator('#deadletters input[type="checkbox"]').first.check()
    page.click('button[value="purge"]')
    expect(page.locator("#notice")).to_have_text("清除必须写明原因")
    assert scalar(dashboard.engine.journal, "select status from dead_letters") == "open"

    page.locator('#deadletters input[type="checkbox"]').first.check()
    page.fill('input[name="why"]', "检验科确认：重复标本，作废")
    page.click('button[value="purge"]')
    expect(page.locator("#notice")).to_have_text("清除：完成 1，跳过 0，失败 0")
    expect(page.locator("#deadletters tr[data-deadletter]")).to_have_count(0)  # open ones only
    row = "select status || ' ' || resolved_by || ' ' || resolution_note from dead_letters"
    assert scalar(dashboard.engine.journal, row) == "purged 王芳 检验科确认：重复标本，作废"


def test_the_language_switch_is_kept_from_page_to_page(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page(VIEWER)
    page.goto(dashboard.base + "/messages")
    expect(page.locator("h1")).to_have_text("消息")
    page.click("a.lang")
    expect(page.locator("h1")).to_have_text("Messages")
    page.click("nav >> text=Dead letters")
    expect(page.locator("h1")).to_have_text("Dead letters")
    page.click("a.lang")
    expect(page.locator("h1")).to_have_text("死信")


def test_a_wrong_password_is_refused_and_the_right_one_signs_in_and_out(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = browsing(dashboard.chromium)
    page.goto(dashboard.base + "/deadletters")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fdeadletters$"))
    log_in(page, dashboard.base, OPERATOR, "not-the-password")
    expect(page.locator(".refused")).to_have_text(re.compile("用户名或密码不正确"))
    expect(page.locator("header .user")).to_have_count(0)

    page.goto(dashboard.base + "/login?next=%2Fdeadletters")
    page.fill('input[name="name"]', OPERATOR)
    page.fill('input[name="password"]', PASSWORD)
    page.click('button[type="submit"]')
    expect(page.locator("h1")).to_have_text("死信")
    expect(page.locator("header .user")).to_have_text("王芳（操作员）")
    page.click("header button")  # sign out: a form with the session's CSRF token
    expect(page).to_have_url(dashboard.base + "/login")
    page.goto(dashboard.base + "/deadletters")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    assert page.csp_refusals == []
    failed = "select count(*) from audit_log where action = 'login_failed' and target = '王芳'"
    assert scalar(dashboard.engine.journal, failed) == 1
