"""Settings and pure parts of the `mllp_out` and `http_out` destinations."""

from __future__ import annotations

import textwrap
from datetime import timedelta
from email.utils import format_datetime
from pathlib import Path

import pytest

from channels.http_out import retry_after_seconds, shown_url
from channels.mllp_out.charset import msh18_name, reencode
from core.clock import now_utc
from core.errors import PermanentDeliveryError, TransientDeliveryError
from deadletter.policy import DEAD, RETRY, RetryPolicy
from engine.check import check_config

REPO = Path(__file__).resolve().parents[3]

MESSAGE = "MSH|^~\\&|HIS|FY01|RP|RP|20240321||ADT^A04|C1|P|2.5|||AL|NE|CHN|UNICODE UTF-8\rPID|1||0010031207^^^HIS^PI||王小红\r"


class TestReencode:
    def test_gb18030_bytes_and_msh18(self) -> None:
        """The text arrives in GB18030 and MSH-18 names it as HL7 does."""
        out = reencode(MESSAGE, "gb18030")
        assert out.decode("gb18030") == MESSAGE.replace("UNICODE UTF-8", "GB 18030-2000")

    def test_a_short_msh_gets_msh18(self) -> None:
        """An MSH that stops before MSH-18 is extended to carry it."""
        out = reencode("MSH|^~\\&|HIS|FY01\rPID|1\r", "utf-8").decode()
        assert out.split("\r")[0].split("|")[17] == "UNICODE UTF-8"
        assert out.endswith("\rPID|1\r")

    def test_an_unencodable_name_names_the_field_not_the_name(self) -> None:
        """A Chinese name for a latin-1 receiver is a permanent error that says PID-5 and hides the name."""
        with pytest.raises(PermanentDeliveryError) as caught:
            reencode(MESSAGE, "latin-1")
        assert str(caught.value).startswith("PID-5 holds a character iso8859-1 cannot encode")
        assert "王" not in str(caught.value)

    def test_a_charset_without_an_hl7_name_is_refused(self) -> None:
        """Only charsets MSH-18 can name are accepted; GBK is steered to its superset GB18030."""
        with pytest.raises(ValueError, match="no HL7 MSH-18 name"):
            msh18_name("cp1252")
        with pytest.raises(ValueError, match="use gb18030"):
            msh18_name("gbk")


ROUTES = """\
version: 1
channels:
  his: {type: mllp, listen: 127.0.0.1:2575}
routes:
  - {name: fwd, from: his, mapping: m.yaml, to: out}
destinations:
  out: %s
"""


def _check(tmp_path: Path, destination: str) -> list[str]:
    (tmp_path / "m.yaml").write_text("# mapping\n", encoding="utf-8")
    (tmp_path / "routes.yaml").write_text(textwrap.dedent(ROUTES % destination), encoding="utf-8")
    return [str(p).replace(str(tmp_path) + "/", "") for p in check_config(tmp_path / "routes.yaml", {})]


class TestSettings:
    def test_good_settings_pass_check(self, tmp_path: Path) -> None:
        """Both examples of docs/connectors.md are valid."""
        assert _check(tmp_path, "{type: mllp_out, endpoint: '10.1.2.3:6661', encoding: gb18030}") == []
        http = (
            "{type: http_out, url: 'https://p.example/r', headers: {X-Hospital: FY01}, token_env: RP_TOKEN}"
        )
        assert _check(tmp_path, http) == []

    def test_an_unknown_charset_is_a_check_error_on_its_line(self, tmp_path: Path) -> None:
        (problem,) = _check(tmp_path, "{type: mllp_out, endpoint: '10.1.2.3:6661', encoding: klingon}")
        assert problem.startswith("routes.yaml:7: destinations.out.encoding:")
        assert "unknown text encoding 'klingon'" in problem

    def test_an_endpoint_without_a_port_is_a_check_error(self, tmp_path: Path) -> None:
        (problem,) = _check(tmp_path, "{type: mllp_out, endpoint: '10.1.2.3'}")
        assert "destinations.out.endpoint" in problem

    def test_authorization_in_headers_is_refused_towards_token_env(self, tmp_path: Path) -> None:
        """A token written into routes.yaml is refused; the message says where it belongs."""
        (problem,) = _check(
            tmp_path, "{type: http_out, url: 'https://p.example/r', headers: {Authorization: x}}"
        )
        assert (
            "header Authorization is set by the engine (name the token's environment variable in token_env)"
            in problem
        )

    def test_token_env_must_name_a_variable(self, tmp_path: Path) -> None:
        (problem,) = _check(tmp_path, "{type: http_out, url: 'https://p.example/r', token_env: 'abc def'}")
        assert "token_env names an environment variable" in problem

    def test_a_url_that_is_not_http_is_refused(self, tmp_path: Path) -> None:
        (problem,) = _check(tmp_path, "{type: http_out, url: 'ftp://p.example/r'}")
        assert "expected an http:// or https:// URL" in problem


class TestHttpParts:
    def test_shown_url_hides_password_and_query(self) -> None:
        assert shown_url("https://rp:pw@p.example/r?token=abc") == "https://rp:***@p.example/r?…"
        assert shown_url("https://p.example/r") == "https://p.example/r"

    def test_retry_after_in_seconds_or_as_a_date(self) -> None:
        assert retry_after_seconds("120") == 120.0
        when = format_datetime(now_utc() + timedelta(seconds=30), usegmt=True)
        assert 25 <= (retry_after_seconds(when) or 0) <= 30
        assert retry_after_seconds("soon") is None
        assert retry_after_seconds(None) is None


class _AskedToWait(TransientDeliveryError):
    def __init__(self, seconds: float) -> None:
        super().__init__("busy")
        self.retry_after = seconds


class TestRetryAfterInThePolicy:
    policy = RetryPolicy((10.0, 60.0, 600.0), max_attempts=5)

    def test_a_wait_asked_rounds_up_to_the_next_tier(self) -> None:
        assert self.policy.decide(_AskedToWait(30), 1) == (RETRY, 60.0)

    def test_a_shorter_wait_asked_keeps_the_tier(self) -> None:
        assert self.policy.decide(_AskedToWait(3), 2) == (RETRY, 60.0)

    def test_a_wait_past_the_longest_tier_waits_the_longest(self) -> None:
        assert self.policy.decide(_AskedToWait(7200), 1) == (RETRY, 600.0)

    def test_attempts_still_run_out(self) -> None:
        assert self.policy.decide(_AskedToWait(30), 5) == (DEAD, None)


def test_the_commented_examples_in_routes_yaml_are_valid(tmp_path: Path) -> None:
    """Uncommenting the shipped examples gives a routes.yaml that `check` accepts, with both types."""
    from core.settings import load_settings

    shipped = (REPO / "routes.yaml").read_text(encoding="utf-8")
    lines, in_example = [], False
    for line in shipped.splitlines():  # each example: `  # regional…:` and its `  #   ` lines
        in_example = line.startswith("  # regional") or (in_example and line.startswith("  #   "))
        lines.append("  " + line[4:] if in_example else line)
    text = "\n".join(lines).replace("mappings/", f"{REPO}/mappings/")
    text = text.replace("engine:\n", f"engine:\n  allowed_paths: ['{REPO}/mappings']\n", 1)
    (tmp_path / "routes.yaml").write_text(text + "\n", encoding="utf-8")
    assert [str(p) for p in check_config(tmp_path / "routes.yaml", {})] == []
    kinds = {d.type for d in load_settings(tmp_path / "routes.yaml", env={}).destinations.values()}
    assert kinds == {"record_store", "wechat", "mllp_out", "http_out"}


def test_the_run_banner_shows_where_forwarding_goes_without_secrets(tmp_path: Path) -> None:
    """`mch-engine run` names each forwarding destination's target, not a record store, with the
    URL's password and query hidden."""
    from types import SimpleNamespace

    from core.settings import load_settings
    from monitors.run_banner import backend_lines

    (tmp_path / "m.yaml").write_text("# mapping\n", encoding="utf-8")
    routes = ROUTES % "{type: mllp_out, endpoint: '10.1.2.3:6661'}"
    routes += "  api: {type: http_out, url: 'https://rp:pw@p.example/r?token=abc'}\n"
    (tmp_path / "routes.yaml").write_text(routes, encoding="utf-8")
    settings = load_settings(tmp_path / "routes.yaml", env={})
    lines = backend_lines(SimpleNamespace(settings=settings))  # in the default language, zh
    assert "转发 out：mllp://10.1.2.3:6661" in lines
    assert "转发 api：https://rp:***@p.example/r?…" in lines
    assert not any("记录库" in line for line in lines)
