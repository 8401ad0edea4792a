"""The shipped Prometheus rules pass `promtool test rules` (Debian's `prometheus` package;
.ci/run installs it), and they are the engine's own rules: one `rule` label per rule key."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from monitors.alerts.rules import RULES
from support import REPO, unavailable

RULES_DIR = REPO / "monitors" / "prometheus"


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if found is None:
        unavailable("promtool is not installed (apt-get install prometheus, see .ci/run)")
    return found


@pytest.mark.parametrize("args", [("check", "rules", "alerts.yml"), ("test", "rules", "alerts_test.yml")])
def test_promtool_accepts_and_passes_the_shipped_rules(args: tuple[str, ...]) -> None:
    result = subprocess.run([promtool(), *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_every_engine_rule_has_its_prometheus_twin_and_no_other() -> None:
    groups = yaml.safe_load((RULES_DIR / "alerts.yml").read_text(encoding="utf-8"))["groups"]
    labelled = {r["labels"]["rule"] for g in groups for r in g["rules"]}
    assert labelled == {r.key for r in RULES}
    tested = yaml.safe_load((RULES_DIR / "alerts_test.yml").read_text(encoding="utf-8"))
    alerts = {r["alert"] for g in groups for r in g["rules"]}
    checked = {t["alertname"] for test in tested["tests"] for t in test["alert_rule_test"]}
    assert checked == alerts
