"""The `http_out` destination against a real HTTP server on 127.0.0.1 that answers as each
test scripts it (503 then 200, 429 with Retry-After, 400)."""

from __future__ import annotations

from pathlib import Path

import pytest
from http_receiver import Script, http_server

from core.errors import StartupError
from support import (
    RunningEngine,
    attempt_errors,
    dead_letter_reasons,
    delivery_rows,
    oru,
    wait_until,
    write_routes,
)

FAST_RETRY = "retry: {tiers: [0.2s, 1s, 2s], max_attempts: 3}\n"


def routes_to(tmp_path: Path, destination: str) -> Path:
    return write_routes(
        tmp_path,
        database=f"sqlite:///{tmp_path}/engine.db",
        lab_to="regional_api",
        extra=f"  regional_api: {destination}\n{FAST_RETRY}",
    )


class TestHttpOut:
    def test_503_then_200_is_retried_and_delivered_with_token_and_headers(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first POST gets 503 (transient), the retry 200; both carry the record JSON, the
        bearer token from the environment, the configured header and one idempotency key."""
        monkeypatch.setenv("REGIONAL_TOKEN_T1", "s3cret-token")
        with http_server(lambda n: (503, {}, b"maintenance") if n == 1 else (200, {}, b"{}")) as (url, seen):
            dest = f"{{type: http_out, url: '{url}', token_env: REGIONAL_TOKEN_T1, headers: {{X-Hospital: FY01}}}}"
            with RunningEngine(routes_to(tmp_path, dest)) as a:
                a.send([oru("ORU-H-1", "F-H-1", "0010097001")])
                wait_until(lambda: delivery_rows(a, "regional_api") == [("delivered", 2)])
                (error,) = attempt_errors(a)
        assert error == f'TransientDeliveryError: {url} answered 503 Service Unavailable: "maintenance"'
        assert "s3cret" not in error
        (path, headers, body), (_, headers2, body2) = seen.requests
        assert path == "/mch/records"
        assert headers["Authorization"] == "Bearer s3cret-token"
        assert headers["X-Hospital"] == "FY01"
        assert headers["Content-Type"] == "application/json; charset=utf-8"
        assert headers["X-MCH-Record-Type"] == "LabResult"
        assert headers["Idempotency-Key"] == headers2["Idempotency-Key"]
        assert body == body2
        assert body["record_id"] == "lab:LIS:10:F-H-1"
        assert body["person"]["name"] == "王小红"

    def test_429_waits_at_least_retry_after(self, tmp_path: Path) -> None:
        """429 with Retry-After: 1 makes the retry wait for the 1 s tier, not the first 0.2 s one."""
        script: Script = lambda n: (429, {"Retry-After": "1"}, b"slow down") if n == 1 else (200, {}, b"")  # noqa: E731
        with (
            http_server(script) as (url, seen),
            RunningEngine(routes_to(tmp_path, f"{{type: http_out, url: '{url}'}}")) as a,
        ):
            a.send([oru("ORU-H-2", "F-H-2", "0010097002")])
            wait_until(lambda: delivery_rows(a, "regional_api") == [("delivered", 2)])
        first, second = seen.times
        assert second - first >= 0.95

    def test_400_is_a_dead_letter_quoting_the_answer(self, tmp_path: Path) -> None:
        """Another 4xx will not get better: one POST, a dead letter with the status and the body's start."""
        script: Script = lambda n: (400, {}, b'{"error": "person.id_card missing"}')  # noqa: E731
        with (
            http_server(script) as (url, seen),
            RunningEngine(routes_to(tmp_path, f"{{type: http_out, url: '{url}'}}")) as a,
        ):
            a.send([oru("ORU-H-3", "F-H-3", "0010097003")])
            wait_until(lambda: delivery_rows(a, "regional_api") == [("dead", 1)])
            (reason,) = dead_letter_reasons(a)
        assert reason.startswith(f"PermanentDeliveryError: {url} answered 400 Bad Request")
        assert "person.id_card missing" in reason
        assert len(seen.requests) == 1

    def test_a_missing_token_variable_stops_the_start(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """token_env naming an unset variable: the engine refuses to start and says which variable."""
        monkeypatch.delenv("REGIONAL_TOKEN_UNSET", raising=False)
        dest = "{type: http_out, url: 'http://127.0.0.1:9/x', token_env: REGIONAL_TOKEN_UNSET}"
        engine = RunningEngine(routes_to(tmp_path, dest))
        with pytest.raises(StartupError, match="REGIONAL_TOKEN_UNSET is not set"):
            engine.__enter__()
        engine.loop.call_soon_threadsafe(engine.loop.stop)
        engine.thread.join(10)
        engine.loop.close()
