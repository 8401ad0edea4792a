"""Two servers: `status` and the dashboard overview say which process leads and which waits."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from core import i18n
from monitors.engine_status import EngineStatus, LeaderNumbers, ProcessNumbers
from monitors.status_command import render
from monitors.web.rendering import templates

TZ = ZoneInfo("Asia/Shanghai")
SINCE = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def two_servers(leader: str | None) -> EngineStatus:
    status = EngineStatus(SINCE, "postgresql://…", "amqp://…")
    for host, pid in (("fy-a", 101), ("fy-b", 202)):
        part = "leader" if leader == f"{host}:{pid}" else "standby"
        status.processes.append(ProcessNumbers(host, pid, ["deliver"], SINCE, SINCE, True, [], part))
    status.leader = LeaderNumbers("fuyou", leader, SINCE if leader else None)
    if leader is None:
        status.problem("no_leader", "fuyou")
    return status


def overview(status: EngineStatus, lang: str) -> str:
    page = templates.get_template("pages/overview_live.html")
    return page.render(
        status=status,
        channels=[],
        destinations=[],
        alerts=[],
        problems=status.problems,
        t=lambda key, **v: i18n.t_in(lang, key, **v),
        problem=lambda p: i18n.t_in(lang, f"status_cmd_{p.partition(':')[0]}", subject=p.partition(":")[2]),
        when=lambda v: v.astimezone(TZ).strftime("%Y-%m-%d %H:%M") if v else "-",
        may=lambda _p: False,
        lang=lang,
    )


def test_status_names_the_leader_with_its_start_and_the_standby() -> None:
    before = i18n.language()
    i18n.set_language("en")
    try:
        text = render(two_servers("fy-a:101"), TZ)
    finally:
        i18n.set_language(before)
    assert "leader: fy-a:101 (since 2026-12-07 10:00" in text
    assert "standby: fy-b:202" in text


def test_the_overview_shows_leader_and_standby_in_chinese_and_english() -> None:
    zh = overview(two_servers("fy-b:202"), "zh")
    assert "主用：fy-b:202" in zh and "备用：fy-a:101" in zh
    en = overview(two_servers("fy-b:202"), "en")
    assert "leader: fy-b:202 (since 2026-12-07 10:00)" in en and "standby: fy-a:101" in en


def test_no_live_leader_is_a_problem_said_on_both() -> None:
    status = two_servers(None)
    assert not status.ok
    en = overview(status, "en")
    assert "no live process leads" in en and "no messages are taken in" in en
    assert "没有存活的主用进程" in overview(status, "zh")
