"""An ORU^R01 over MLLP becomes a LabResult and a "report ready" notice that reaches the
WeChat stand-in: the shipped routes.yaml and destination, a binding imported with the CLI,
credentials from the environment — and nothing clinical in what WeChat gets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from faults.engine_process import mch
from wechat_standin import WechatStandIn

from channels.mllp.ack import parse_acks
from support import REPO, RunningEngine, shipped_routes_copy, wait_until

OPENID = "oPATIENT_chen_siyu_01"
SAMPLE = REPO / "mappings/lis/samples/003_ORU-R01_utf-8__lis-blood-routine.hl7"


def shipped_routes(tmp_path: Path) -> Path:
    """The shipped routes with quiet hours off, since the test runs at any hour (quiet hours
    have their own tests with a controlled clock)."""
    routes = shipped_routes_copy(tmp_path)
    text, quiet = re.subn(
        r'quiet_hours: "21:00-08:00"', "quiet_hours: null", routes.read_text(encoding="utf-8")
    )
    assert quiet == 1
    routes.write_text(text, encoding="utf-8")
    return routes


def test_a_lab_result_over_mllp_reaches_the_bound_mother_as_a_notice_without_clinical_content(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = shipped_routes(tmp_path)
    bindings = tmp_path / "bindings.csv"
    bindings.write_text(
        f"openid,id_card,his_id,his_system,phone,role\n{OPENID},500112199403151525,,,13800001111,patient\n",
        encoding="utf-8",
    )
    imported = mch(routes, "wechat", "bind", "import", str(bindings))
    assert imported.returncode == 0, imported.stdout + imported.stderr

    templates = {"TPL_REPORT_READY": {"thing1": "thing", "time2": "time"}}
    with WechatStandIn(templates=templates) as wx:
        wx.following.add(OPENID)
        monkeypatch.setenv("MCH_WECHAT_API_BASE", wx.base_url)
        monkeypatch.setenv("MCH_WECHAT_APPID", wx.appid)
        monkeypatch.setenv("MCH_WECHAT_SECRET", wx.secret)
        with RunningEngine(routes) as engine:
            [ack] = engine.send([SAMPLE.read_bytes()])
            assert [a.code for a in parse_acks((ack or b"").decode("latin-1"))] == ["AA"]
            wait_until(lambda: len(wx.received) == 1, timeout=20)

            # The same message again is a duplicate, and a reprocess of the route finds the
            # record unchanged: neither sends anything more (the ledger's own guard against a
            # redelivered envelope is test_wechat_destination's).
            engine.send([SAMPLE.read_bytes()])
            again = mch(routes, "reprocess", "--route", "lab-results", "--wait", "60", "--as", "test")
            assert again.returncode == 0, again.stdout + again.stderr
            [sent] = wx.received

    assert (sent.openid, sent.template_id) == (OPENID, "TPL_REPORT_READY")
    assert sent.data["thing1"] == "血常规"
    assert sent.data["time2"].startswith("2024-03-21")
    text = json.dumps(sent.data, ensure_ascii=False) + (sent.url or "")
    for clinical in ("118", "215", "7.85", "陈思雨", "500112199403151525", "0010023456", "g/L"):
        assert clinical not in text, clinical
    assert wx.calls["/cgi-bin/stable_token"] == 1 and wx.calls["/cgi-bin/token"] == 0

    outbox = mch(routes, "wechat", "outbox", "--json")
    assert outbox.returncode == 0, outbox.stderr
    [row] = [json.loads(line) for line in outbox.stdout.splitlines() if line.startswith("{")]
    assert row["status"] == "sent" and OPENID not in outbox.stdout
