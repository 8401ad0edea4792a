"""Stop and start a channel from its dashboard page, in headless Chromium against a running
engine (embedded default, and PostgreSQL + RabbitMQ): the operator's buttons close and open
the MLLP port and the page says who stopped it; a viewer has no buttons and is refused when
posting."""

from __future__ import annotations

import pytest
from test_dashboard_pages import OPERATOR, VIEWER, Dashboard, dashboard
from test_operator_actions import adt, backend

from support import refused, scalar, wait_until

pytestmark = pytest.mark.slow

__all__ = ["backend", "dashboard"]


def test_an_operator_stops_and_starts_a_channel_from_its_page(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    port = dashboard.engine.port()
    page = dashboard.page(OPERATOR)
    page.goto(dashboard.base + "/channels/hospital")
    assert page.locator("#held").count() == 0
    page.click('#channel-actions button[value="stop"]')
    expect(page.locator("#notice")).to_contain_text("已请求停止")
    wait_until(lambda: refused(port), 10)
    page.goto(dashboard.base + "/channels/hospital")
    expect(page.locator("#counters .badge")).to_have_text("已停止")
    expect(page.locator("#held")).to_contain_text("由 王芳 (web:127.0.0.1) 于")
    expect(page.locator('#channel-actions button[value="stop"]')).to_have_count(0)
    who = "select actor || ' ' || role || ' from ' || source from audit_log where action = 'channel_stop'"
    assert scalar(dashboard.engine.journal, who) == "王芳 operator from web:127.0.0.1"

    page.click('#channel-actions button[value="start"]')
    expect(page.locator("#notice")).to_contain_text("已请求启动")
    wait_until(lambda: not refused(port), 10)
    assert b"MSA|AA" in (dashboard.send([adt("WEB-CH-1", "0010077001")])[0] or b"")
    assert page.csp_refusals == []


def test_an_operator_pauses_a_channel_for_a_span_from_its_page(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    page = dashboard.page(OPERATOR)
    page.goto(dashboard.base + "/channels/hospital")
    page.select_option('#channel-actions select[name="for"]', "15m")
    port = dashboard.engine.port()
    page.click('#channel-actions button[value="pause"]')
    wait_until(lambda: refused(port), 10)
    page.goto(dashboard.base + "/channels/hospital")
    expect(page.locator("#counters .badge")).to_have_text("已暂停")
    expect(page.locator("#held")).to_contain_text("自动恢复")


def test_a_viewer_has_no_channel_buttons_and_is_refused_when_posting(dashboard: Dashboard) -> None:
    from playwright.sync_api import expect

    viewer = dashboard.page(VIEWER)
    viewer.goto(dashboard.base + "/channels/hospital")
    expect(viewer.locator("#counters")).to_have_count(1)
    expect(viewer.locator("#channel-actions")).to_have_count(0)
    token = viewer.locator('meta[name="csrf-token"]').get_attribute("content")
    for action in ("stop", "start", "pause"):
        form = {"for": "15m", "csrf_token": token}
        answer = viewer.request.post(f"{dashboard.base}/channels/hospital/{action}", form=form)
        assert answer.status == 403, action
        assert answer.text() != "csrf", "refused for the role, not for a missing token"
    assert not refused(dashboard.engine.port())
    count = "select count(*) from audit_log where action like 'channel_%'"
    assert scalar(dashboard.engine.journal, count) == 0
