"""`mch-engine status`, the heartbeat rows, `run`'s own lines and the HTTP app, as an
operator meets them: real engine processes, real databases and broker, real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from channels.mllp.client import send_all
from core.settings import load_settings
from support import AMQP_URL, REPO, free_port, hl7, pg_schema, require_service, wait_until, write_routes

CLI = [sys.executable, "-m", "engine.cli"]

GOOD = hl7(
    "MSH|^~\\&|HIS|FY01|MCH|FY01|20250310091500||ADT^A04^ADT_A01|ST-GOOD-1|P|2.5",
    "PID|1||0010088001^^^HIS^PI||林晓雯||19950812|F",
)
REJECTED = hl7("MSH|^~\\&|HIS|FY01|MCH|FY01|20250310091500||ADT^A04^ADT_A01||P|2.5", "PID|1||1^^^HIS^PI")
FAILING = hl7(
    "MSH|^~\\&|HIS|FY01|MCH|FY01|20250310091500||ADT^A04^ADT_A01|ST-FAILING-1|P|2.5",
    "PID|1||0010088002^^^HIS^PI||林晓雯||19951399|F",
)
UNROUTED = hl7("MSH|^~\\&|HIS|FY01|MCH|FY01|20250310091500||ADT^A03^ADT_A03|ST-UNROUTED-1|P|2.5")


RECENT_KEYS = (
    "rate_1m",
    "rate_15m",
    "ack_latency_p50_s",
    "ack_latency_p95_s",
    "ack_latency_p99_s",
    "poll_lag_s",
    "silent_for_s",
)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update({"PYTHONPATH": str(REPO), "MCH_LANG": "en", **extra})
    return env


def mch(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=90)


def routes_with_http(tmp_path: Path, database: str, http_port: int | None = None, **kwargs: Any) -> Path:
    path = write_routes(tmp_path, database=database, **kwargs)
    if http_port:
        body = path.read_text(encoding="utf-8")
        path.write_text(body.replace("engine:\n", f"engine:\n  http: {{listen: 127.0.0.1:{http_port}}}\n", 1))
    return path


class EngineProcess:
    """`mch-engine run` as a subprocess: its stdout lines, and its log on stderr in a file."""

    def __init__(self, routes: Path, tmp_path: Path, *args: str, banner: int = 3) -> None:
        self.log_path = tmp_path / f"engine-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [*CLI, "run", "--config", str(routes), "--summary-interval", "1", *args],
            env=_env(),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self.proc.stdout is not None
        self.first = self.proc.stdout.readline()
        if "engine running" not in self.first:
            self.proc.kill()
            raise AssertionError(self.log_path.read_text())
        self.banner = [self.proc.stdout.readline() for _ in range(banner)]

    def logs(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._log.close()


def send(port: int, *payloads: bytes) -> None:
    results = asyncio.run(send_all("127.0.0.1", port, list(payloads)))
    assert all(r.ack for r in results)


def status_json(routes: Path, tmp_path: Path) -> tuple[int, dict[str, Any]]:
    result = mch("status", "--config", str(routes), "--json", env=_env(), cwd=tmp_path)
    assert "Traceback" not in result.stderr
    return result.returncode, json.loads(result.stdout)


def port_of(routes: Path, channel: str = "hospital") -> int:
    return load_settings(routes).channels[channel].host_port[1]


def http_get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/engine.db"


class TestEmbeddedDefault:
    def test_status_of_a_running_engine_and_its_http_app(self, tmp_path: Path, sqlite_url: str) -> None:
        """status shows the listeners and the counts, exits 0; /healthz and /status answer over HTTP
        with the same numbers; the heartbeat row names this process."""
        http_port = free_port()
        routes = routes_with_http(tmp_path, sqlite_url, http_port)
        engine = EngineProcess(routes, tmp_path, banner=4)
        try:
            hospital = port_of(routes)
            assert f"hospital → 127.0.0.1:{hospital}" in engine.first
            assert f"journal: {sqlite_url}\n" in engine.banner
            assert engine.banner[-1] == f"HTTP: http://127.0.0.1:{http_port}/status and /healthz\n"
            send(hospital, GOOD, GOOD, REJECTED, UNROUTED)

            def settled() -> dict[str, Any] | None:
                code, body = status_json(routes, tmp_path)
                ch = {c["name"]: c for c in body["channels"]}["hospital"]
                dest = body["destinations"][0]
                return body if code == 0 and dest["delivered"] == 1 and ch["unrouted"] == 1 else None

            body = wait_until(settled)
            hospital_numbers = dict({c["name"]: c for c in body["channels"]}["hospital"])
            recent = {k: hospital_numbers.pop(k) for k in RECENT_KEYS}
            # Three messages in the last minute (a duplicate is not a new one), each ACKed after its commit.
            assert recent["rate_1m"] == 3.0 and recent["rate_15m"] == round(3 / 15, 2)
            assert 0 < recent["ack_latency_p50_s"] <= recent["ack_latency_p99_s"] < 5
            assert 0 <= recent["silent_for_s"] < 120 and recent["poll_lag_s"] is None
            [dest] = body["destinations"]
            assert (dest["retrying"], dest["dead_lettered"], dest["delivered_rate_1m"]) == (0, 0, 1.0)
            assert 0 < dest["delivery_latency_p50_s"] == dest["delivery_latency_p99_s"] < 30
            assert body["journal_reachable"] is True and body["broker_reachable"] is None
            assert body["disk_free_bytes"] > 0 and 0 < body["disk_free_ratio"] <= 1
            assert hospital_numbers | {"last_message_at": None} == {
                "name": "hospital",
                "type": "mllp",
                "listen": f"127.0.0.1:{hospital}",
                "listening": True,
                "open_connections": 0,
                "connections_closed": {
                    "not_allowed": 0,
                    "over_limit": 0,
                    "tls_failed": 0,
                    "frame_deadline": 0,
                },
                "received": 3,
                "routed": 1,
                "unrouted": 1,
                "failed": 0,
                "rejected": 1,
                "waiting": 0,
                "duplicates": 1,
                "control_id_reused": 0,
                "last_message_at": None,
                "open_dead_letters": 0,
                "error": None,
                "state": "running",
            }
            # The configured engine.timezone (Asia/Shanghai by default), as every other --json listing.
            last = datetime.fromisoformat(hospital_numbers["last_message_at"])
            assert hospital_numbers["last_message_at"].endswith("+08:00")
            assert abs((datetime.now(UTC) - last).total_seconds()) < 120
            assert datetime.fromisoformat(body["checked_at"]).utcoffset() == timedelta(hours=8)
            assert body["ok"] is True and body["problems"] == []
            [process] = body["processes"]
            assert process["pid"] == engine.proc.pid and process["alive"] is True
            assert process["roles"] == ["deliver", "ingest", "transform"]

            table = mch("status", "--config", str(routes), env=_env(), cwd=tmp_path)
            assert table.returncode == 0, table.stderr
            assert "channel   address" in table.stdout and "all well" in table.stdout
            assert "per min (1m)  per min (15m)  ACK p95 s  silent s" in table.stdout
            assert "disk free where the journal lives:" in table.stdout
            zh = mch("status", "--config", str(routes), env=_env(MCH_LANG="zh"), cwd=tmp_path)
            assert "通道      地址" in zh.stdout and "一切正常" in zh.stdout

            rows = _rows(sqlite_url, "SELECT host, pid, roles, listeners FROM engine_processes")
            assert [(r[1], json.loads(r[2])) for r in rows] == [
                (engine.proc.pid, ["deliver", "ingest", "transform"])
            ]
            assert {x["channel"]: x["port"] for x in json.loads(rows[0][3])}["hospital"] == hospital

            assert http_get(http_port, "/healthz") == (200, {"status": "ok"})
            code, served = http_get(http_port, "/status")
            assert code == 200
            # The same numbers, but those that move with the clock (rates, silence, latencies).
            assert _steady(served["channels"]) == _steady(body["channels"])
            assert _steady(served["destinations"]) == _steady(body["destinations"])
            assert served["routes"] == body["routes"]
            assert {r["name"]: r["routed"] for r in body["routes"]} == {"persons": 1, "lab-results": 0}
            assert served["checked_at"].endswith("+08:00")
            assert "林晓雯" not in json.dumps(served, ensure_ascii=False)
        finally:
            engine.stop()

        stopped = mch("status", "--config", str(routes), env=_env(), cwd=tmp_path)
        assert stopped.returncode == 1
        assert "the engine is not running" in stopped.stdout
        assert "channel hospital is not listening" in stopped.stdout
        assert "Traceback" not in stopped.stderr
        # A clean stop marks the row stopped; what the process loaded stays for `check --diff`.
        assert _rows(sqlite_url, "SELECT pid FROM engine_processes WHERE stopped_at IS NULL") == []
        [(pid, loaded)] = _rows(sqlite_url, "SELECT pid, snapshot FROM engine_processes")
        assert pid == engine.proc.pid and "hospital" in json.loads(loaded)["channels"]

    def test_one_process_row_serves_status_and_check_diff(self, tmp_path: Path, sqlite_url: str) -> None:
        """The running process's row says what it loaded (check --diff against it); after a clean
        stop status no longer lists it and check --diff compares with what it last loaded."""
        routes = routes_with_http(tmp_path, sqlite_url)
        engine = EngineProcess(routes, tmp_path)
        name = f"{socket.gethostname()}:{engine.proc.pid}"
        try:
            running = mch("check", "--config", str(routes), "--diff", env=_env(), cwd=tmp_path)
            assert f"compared with what the running engine {name} loaded" in running.stdout
            assert "no changes: a reload would change nothing" in running.stdout
        finally:
            engine.stop()
        code, body = status_json(routes, tmp_path)
        assert (code, body["processes"]) == (1, [])
        routes.write_text(routes.read_text(encoding="utf-8").replace("utf-8", "gb18030", 1), encoding="utf-8")
        after = mch("check", "--config", str(routes), "--diff", env=_env(), cwd=tmp_path)
        assert f"no engine is running; compared with what engine {name} last loaded" in after.stdout
        assert "encoding" in after.stdout and "no changes" not in after.stdout

    def test_log_lines_for_rejected_and_unrouted_messages_and_the_summary(
        self, tmp_path: Path, sqlite_url: str
    ) -> None:
        """One warning per rejected, unrouted and failed message (channel, control id, reason), a summary
        line counting what happened since the last one, no per-message line at info, no name."""
        routes = routes_with_http(tmp_path, sqlite_url)
        engine = EngineProcess(routes, tmp_path)
        try:
            send(port_of(routes), GOOD, REJECTED, UNROUTED, FAILING)

            def summed() -> bool:
                lines = [x for x in engine.logs() if x["event"] == "summary"]
                done = sum(x["received"] for x in lines) == 4 and sum(x["delivered"] for x in lines) == 1
                return done and lines[-1]["received"] == 0  # and a quiet interval after it

            wait_until(summed)
        finally:
            engine.stop()
        logs = engine.logs()
        [rejected] = [x for x in logs if x["event"] == "message_rejected"]
        assert rejected["channel"] == "hospital" and rejected["reason"] == "101 MSH-10"
        assert rejected["message_type"] == "ADT^A04^ADT_A01" and rejected["level"] == "warning"
        [unrouted] = [x for x in logs if x["event"] == "message_unrouted"]
        assert (unrouted["channel"], unrouted["control_id"], unrouted["reason"]) == (
            "hospital",
            "ST-UNROUTED-1",
            "no_route",
        )
        [failed] = [x for x in logs if x["event"] == "transform_failed"]
        assert (failed["channel"], failed["control_id"], failed["reason"]) == (
            "hospital",
            "ST-FAILING-1",
            "convert hl7_date",
        )
        assert "19951399" not in engine.log_path.read_text()
        summary = [x for x in logs if x["event"] == "summary"]
        totals = {
            k: sum(x[k] for x in summary) for k in ("accepted", "rejected", "routed", "unrouted", "failed")
        }
        assert totals == {"accepted": 3, "rejected": 1, "routed": 1, "unrouted": 1, "failed": 1}
        # Counts since the previous line, not since the start: the quiet interval is all zeros.
        assert not any(summary[-1][k] for k in totals)
        assert not [x for x in logs if x["event"] == "message_routed"]  # debug only
        assert "林晓雯" not in engine.log_path.read_text()

        # Per route: the registration route took the good and the failing message, routed one.
        _, body = status_json(routes, tmp_path)
        numbers = {r["name"]: r for r in body["routes"]}
        persons = numbers["persons"]
        assert (persons["received"], persons["routed"], persons["failed"]) == (2, 1, 1)
        assert persons["open_dead_letters"] == 1 and persons["last_message_at"].endswith("+08:00")
        lab = numbers["lab-results"]
        assert (lab["received"], lab["routed"], lab["failed"], lab["last_message_at"]) == (0, 0, 0, None)
        table = mch("status", "--config", str(routes), env=_env(), cwd=tmp_path).stdout
        assert "route        from              to            received  routed  failed  last message" in table
        [row] = [line for line in table.splitlines() if line.startswith("persons ")]
        assert row.split()[3:6] == ["2", "1", "1"], row

    def test_a_delivery_failure_is_logged_with_channel_control_id_and_reason(
        self, tmp_path: Path, sqlite_url: str
    ) -> None:
        """A record the store refuses ends as a dead letter: its error line names the channel,
        the control id and a reason code, as transform failures do; never the patient."""
        from channels.record_store import store as record_store

        routes = routes_with_http(tmp_path, sqlite_url, extra="retry:\n  tiers: [1s]\n  max_attempts: 2\n")
        store = create_engine(sqlite_url)
        try:
            record_store.ensure_schema(store)
            with store.begin() as conn:
                conn.execute(
                    text(
                        "CREATE TRIGGER refuse BEFORE INSERT ON persons "
                        "BEGIN SELECT RAISE(ABORT, 'test: the store refuses'); END"
                    )
                )
        finally:
            store.dispose()
        engine = EngineProcess(routes, tmp_path)
        try:
            send(port_of(routes), GOOD)
            wait_until(lambda: [x for x in engine.logs() if x["event"] == "dead_letter"], timeout=60)
        finally:
            engine.stop()
        [dead] = [x for x in engine.logs() if x["event"] == "dead_letter"]
        assert (dead["channel"], dead["control_id"], dead["destination"]) == (
            "hospital",
            "ST-GOOD-1",
            "record_store",
        )
        # The reason code is the kind of error the dead letter records (`deadletter show` has its text).
        [reason] = _rows(sqlite_url, "SELECT reason FROM dead_letters")
        assert dead["reason"] == reason[0].split(":")[0] == "TransientDeliveryError"
        assert dead["message_type"] == "ADT^A04^ADT_A01" and dead["level"] == "error"
        assert "林晓雯" not in engine.log_path.read_text()

    def test_a_killed_engine_counts_as_down(self, tmp_path: Path, sqlite_url: str) -> None:
        """kill -9 leaves the heartbeat row; once it is older than the bound, status says the
        process is down and exits 1; a new engine on the same host replaces the stale row."""
        routes = routes_with_http(tmp_path, sqlite_url)
        engine = EngineProcess(routes, tmp_path)
        engine.stop(signal.SIGKILL)
        db = create_engine(sqlite_url)
        with db.begin() as conn:
            conn.execute(text("UPDATE engine_processes SET heartbeat_at = '2020-01-01 00:00:00.000000'"))
        db.dispose()
        result = mch("status", "--config", str(routes), env=_env(), cwd=tmp_path)
        assert result.returncode == 1
        assert f"engine process {os.uname().nodename}:{engine.proc.pid} is down" in result.stdout

        again = EngineProcess(routes, tmp_path)
        try:
            code, body = status_json(routes, tmp_path)
            assert code == 0, body["problems"]
            assert [p["pid"] for p in body["processes"]] == [again.proc.pid]
        finally:
            again.stop()

    def test_an_http_address_in_use_stops_the_start_with_one_line(
        self, tmp_path: Path, sqlite_url: str
    ) -> None:
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen(1)
            port = taken.getsockname()[1]
            routes = routes_with_http(tmp_path, sqlite_url, port)
            result = mch("run", "--config", str(routes), env=_env(), cwd=tmp_path)
        assert result.returncode == 2
        assert f"engine.http: cannot listen on 127.0.0.1:{port}" in result.stderr
        assert "Traceback" not in result.stderr
        code, body = status_json(routes, tmp_path)
        assert (code, body["processes"]) == (1, [])

    def test_an_unreachable_journal_is_one_line_and_exit_1(self, tmp_path: Path) -> None:
        routes = write_routes(tmp_path, database="postgresql+psycopg://mch:s3cret@127.0.0.1:1/none")
        result = mch("status", "--config", str(routes), env=_env(), cwd=tmp_path)
        assert result.returncode == 1
        assert result.stderr.startswith(
            "cannot reach the journal database postgresql+psycopg://mch:***@127.0.0.1:1/none"
        )
        assert len(result.stderr.strip().splitlines()) == 1 and "s3cret" not in result.stderr


class TestRabbitMqAndPostgres:
    def test_status_reads_queue_depth_from_the_broker_and_backlog_from_the_journal(
        self, tmp_path: Path
    ) -> None:
        """Without a deliver process, what waits is in RabbitMQ's queue and in the journal;
        `run` names journal and bus with their passwords masked."""
        require_service("127.0.0.1", 5672, "RabbitMQ")
        with pg_schema() as url:
            secret_url = url.replace("postgres@", "postgres:s3cret@", 1)  # trust auth ignores it
            routes = write_routes(tmp_path, database=secret_url, broker=AMQP_URL)
            engine = EngineProcess(routes, tmp_path, "--role", "ingest", "--role", "transform")
            try:
                printed = engine.first + "".join(engine.banner)
                assert "journal: postgresql+psycopg://postgres:***@127.0.0.1" in printed
                assert "bus: amqp://guest:***@127.0.0.1:5672//" in printed
                send(port_of(routes), GOOD)

                def waiting() -> dict[str, Any] | None:
                    code, body = status_json(routes, tmp_path)
                    return body if code == 0 and body["destinations"][0]["queue_depth"] == 1 else None

                body = wait_until(waiting)
                [dest] = body["destinations"]
                assert dest["backlog"] == 1 and dest["delivered"] == 0
                assert dest["oldest_undelivered_age_s"] >= 0
                assert body["broker"] == "amqp://guest:***@127.0.0.1:5672//"
                assert [p["roles"] for p in body["processes"]] == [["ingest", "transform"]]
            finally:
                engine.stop()
            assert "s3cret" not in engine.log_path.read_text() + printed
            deliver = EngineProcess(routes, tmp_path, "--role", "deliver")
            try:
                body = wait_until(
                    lambda: (b := status_json(routes, tmp_path)[1])["destinations"][0]["delivered"] and b
                )
                assert body["destinations"][0]["queue_depth"] == 0
                # No ingest process: nothing listens, and status says so.
                assert status_json(routes, tmp_path)[0] == 1
                assert "channel_not_listening:hospital" in body["problems"]
            finally:
                deliver.stop()


def _steady(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    moving = ("rate", "latency", "silent_for", "lag", "age")
    return [{k: v for k, v in row.items() if not any(m in k for m in moving)} for row in rows]


def _rows(url: str, sql: str) -> list[Any]:
    db = create_engine(url)
    try:
        with db.connect() as conn:
            return list(conn.execute(text(sql)))
    finally:
        db.dispose()
