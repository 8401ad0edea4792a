"""The WeChat families of `/metrics`: notices by outcome and refusal code, and the quota, as a
Prometheus server would parse them (one sample per label set, `_total` counters)."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from monitors.engine_status import EngineStatus
from monitors.metrics import families
from monitors.wechat_status import Outcome, QuotaNumbers, WechatNumbers

T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)
SEND = "/cgi-bin/message/template/send"


class _Fixed:
    def __init__(self, status: EngineStatus) -> None:
        self.status = status

    def collect(self):  # type: ignore[no-untyped-def]
        return families(self.status)


def _scrape(status: EngineStatus) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    registry = CollectorRegistry()
    registry.register(_Fixed(status))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = tuple(sorted(sample.labels.items()))
            assert key not in out.setdefault(sample.name, {}), f"{sample.name} {key} twice"
            out[sample.name][key] = sample.value
    return out


def test_notices_by_outcome_and_code_and_one_quota_per_api() -> None:
    status = EngineStatus(T0, "sqlite://", "memory://")
    quota = QuotaNumbers(SEND, 100000, 1200, 98800, T0)
    status.wechat = [
        WechatNumbers(
            "wechat_patient",
            quota=[quota],
            outcomes=[
                Outcome("sent", "", 40),
                Outcome("undeliverable", "43004", 3),
                Outcome("failed", "47003", 1),
            ],
        ),
        WechatNumbers("wechat_staff", quota=[quota]),  # the same account: its quota once
    ]
    scraped = _scrape(status)
    sends = scraped["mch_wechat_sends_total"]
    assert sends == {
        (("destination", "wechat_patient"), ("errcode", ""), ("result", "sent")): 40,
        (("destination", "wechat_patient"), ("errcode", "43004"), ("result", "undeliverable")): 3,
        (("destination", "wechat_patient"), ("errcode", "47003"), ("result", "failed")): 1,
        (("destination", "wechat_staff"), ("errcode", ""), ("result", "sent")): 0,
    }
    assert scraped["mch_wechat_quota_remaining"] == {(("api", "message/template/send"),): 98800}
    assert scraped["mch_wechat_quota_limit"] == {(("api", "message/template/send"),): 100000}


def test_a_quota_not_read_yet_is_no_series() -> None:
    status = EngineStatus(T0, "sqlite://", "memory://")
    status.wechat = [WechatNumbers("wechat_patient", quota=[QuotaNumbers(SEND, None, None, None, None)])]
    scraped = _scrape(status)
    assert "mch_wechat_quota_remaining" not in scraped
    assert scraped["mch_wechat_sends_total"] == {
        (("destination", "wechat_patient"), ("errcode", ""), ("result", "sent")): 0
    }
