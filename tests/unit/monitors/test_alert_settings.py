"""The `alerts:` section of routes.yaml: defaults when absent, units as elsewhere, and each
mistake reported at its line like the rest of the file."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from core.errors import ConfigErrors
from core.settings import load_settings
from engine.config_diff import compare
from engine.loaded_config import snapshot

HEAD = """
version: 1
channels:
  lis: {type: mllp, listen: "127.0.0.1:2575"}
  alerts: {type: alerts, every: 10s}
"""


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "routes.yaml"
    path.write_text(textwrap.dedent(HEAD).lstrip("\n") + text, encoding="utf-8")
    return load_settings(path, {})


def errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigErrors) as caught:
        load(tmp_path, text)
    return [str(e).split("routes.yaml", 1)[1] for e in caught.value.errors]


def test_defaults_and_units(tmp_path: Path) -> None:
    settings = load(tmp_path, "")
    a = settings.alerts  # type: ignore[attr-defined]
    assert (a.silent_after, a.repeat_every, a.delivery_lag, a.queue_depth) == (900.0, 3600.0, 900.0, 10_000)
    assert a.feed("lis") == (900.0, None)
    assert settings.channels["alerts"].every == 10.0  # type: ignore[attr-defined]
    a = load(
        tmp_path,
        """
alerts:
  repeat_every: 30m
  disk_free_bytes: 2GiB
  feeds:
    lis: {silent_after: 2h, hours: "07:30-21:00"}
""",
    ).alerts  # type: ignore[attr-defined]
    assert (a.repeat_every, a.disk_free_bytes) == (1800.0, 2 << 30)
    assert a.feed("lis") == (7200.0, (450, 1260))


def test_mistakes_are_reported_at_their_line(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """
alerts:
  silent_afer: 15m
  hours: "7:30-21"
  feeds:
    lsi: {silent_after: 30m}
""",
    )
    assert any(e.startswith(":7:") and "silent_afer" in e for e in found), found
    assert any(e.startswith(":8:") and "invalid hours '7:30-21'" in e for e in found), found
    assert any(e.startswith(":10:") and "unknown channel 'lsi'" in e for e in found), found


def test_one_alerts_channel_only(tmp_path: Path) -> None:
    found = errors(
        tmp_path,
        """
  more_alerts: {type: alerts}
""",
    )
    assert any("one alerts channel is enough" in e for e in found), found


def test_a_reload_that_changes_a_bound_reconfigures_the_alerts_channel(tmp_path: Path) -> None:
    before = load(tmp_path, "alerts:\n  repeat_every: 1h\n")
    after = load(tmp_path, 'alerts:\n  repeat_every: 2h\n  feeds: {lis: {hours: "07:30-21:00"}}\n')
    diff = compare(snapshot(before, []), snapshot(after, []))  # type: ignore[arg-type]
    assert diff.channels.changed == {
        "alerts": ["alerts.feeds.lis.hours", "alerts.feeds.lis.silent", "alerts.repeat_every"]
    }
    assert diff.restart_needed == []
