"""The engine's own alerts end to end, on the shipped routes.yaml: a feed silent longer than
its `silent_after` opens an alert (the `alerts` table, an `alert_opened` log line) and the
on-call engineer bound with role `on_call` gets it through the WeChat stand-in; a message on
the feed resolves it, with a recovery notice. Nothing about a patient in any of it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from faults.engine_process import mch
from wechat_standin import WechatStandIn

from channels.mllp.ack import parse_acks
from monitors.alerts.store import open_alerts, recent_alerts
from support import ENGINE_LOG, REPO, RunningEngine, shipped_routes_copy, wait_until

ONCALL = "oONCALL0000000000001"
SAMPLE = REPO / "mappings/lis/samples/003_ORU-R01_utf-8__lis-blood-routine.hl7"
TEMPLATE = {
    "TPL_ENGINE_ALERT": {
        "thing1": "thing",
        "character_string2": "character_string",
        "phrase3": "phrase",
        "time4": "time",
    }
}


def quick_routes(tmp_path: Path) -> Path:
    """The shipped routes with the alert rules looking every half second, `hospital` silent
    after 3 seconds, and the other feed left out of it."""
    routes = shipped_routes_copy(tmp_path)
    text = routes.read_text(encoding="utf-8")
    text, n1 = re.subn(r"type: alerts\n    every: 30s", "type: alerts\n    every: 0.5s", text)
    text, n2 = re.subn(r"  silent_after: 15m ", "  silent_after: 3s ", text)
    text, n3 = re.subn(
        r"lis_gbk: \{silent_after: 30m, hours: \"07:30-21:00\"\}", "lis_gbk: {silent: false}", text
    )
    assert (n1, n2, n3) == (1, 1, 1)
    routes.write_text(text, encoding="utf-8")
    return routes


def test_a_silent_feed_alerts_the_on_call_engineer_and_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = quick_routes(tmp_path)
    bindings = tmp_path / "bindings.csv"
    bindings.write_text(
        f"openid,id_card,his_id,his_system,phone,role\n{ONCALL},,E0099,STAFF,,on_call\n", encoding="utf-8"
    )
    imported = mch(routes, "wechat", "bind", "import", str(bindings))
    assert imported.returncode == 0, imported.stdout + imported.stderr

    with WechatStandIn(templates=TEMPLATE) as wx:
        wx.following.add(ONCALL)
        monkeypatch.setenv("MCH_WECHAT_API_BASE", wx.base_url)
        monkeypatch.setenv("MCH_WECHAT_APPID", wx.appid)
        monkeypatch.setenv("MCH_WECHAT_SECRET", wx.secret)
        mark = ENGINE_LOG.mark()
        with RunningEngine(routes) as engine:
            [ack] = engine.send([SAMPLE.read_bytes()])
            assert [a.code for a in parse_acks((ack or b"").decode("latin-1"))] == ["AA"]

            # Three seconds without a message: the alert opens, once.
            [alert] = wait_until(lambda: open_alerts(engine.journal), timeout=20)
            assert (alert.rule, alert.subject, alert.severity) == ("feed_silent", "hospital", "critical")
            opened = wait_until(lambda: [s for s in wx.received if s.data["phrase3"] == "告警"], timeout=20)
            [notice] = opened
            assert (notice.openid, notice.template_id) == (ONCALL, "TPL_ENGINE_ALERT")
            assert notice.data["thing1"] == "接口无消息" and notice.data["character_string2"] == "hospital"
            logged = ENGINE_LOG.events(mark, "alert_opened")
            assert [(e["rule"], e["subject"], e["level"]) for e in logged] == [
                ("feed_silent", "hospital", "error")
            ]

            # A message on the feed: the alert resolves, and the on-call engineer hears so.
            engine.send([SAMPLE.read_bytes().replace(b"LIS240321113502000318", b"LIS240321113502000319")])
            wait_until(lambda: not open_alerts(engine.journal), timeout=20)
            wait_until(lambda: any(s.data["phrase3"] == "已恢复" for s in wx.received), timeout=20)
            [past] = recent_alerts(engine.journal, 10)
            assert past.state == "resolved" and past.resolved_at is not None
            assert [e["subject"] for e in ENGINE_LOG.events(mark, "alert_resolved")] == ["hospital"]
            sent = list(wx.received)

    assert [s.data["phrase3"] for s in sent] == ["告警", "已恢复"]
    text = json.dumps([s.data for s in sent], ensure_ascii=False)
    for patient in ("陈思雨", "500112199403151525", "0010023456"):
        assert patient not in text
