"""The README's commands, run as a newcomer runs them: `mch-engine run`, `send`, `messages`, `records`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import REPO, free_port

CLI = [sys.executable, "-m", "engine.cli"]


def mch(*args: str, env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60)
    if check:
        assert result.returncode == 0, result.stderr + result.stdout
    return result


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MCH_")}
    env.update(
        PYTHONPATH=str(REPO),
        MCH_DB_URL=f"sqlite:///{tmp_path}/engine.db",
        MCH_MLLP_LISTEN=f"127.0.0.1:{free_port()}",
        MCH_MLLP_GBK_LISTEN=f"127.0.0.1:{free_port()}",
        MCH_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
        MCH_LANG="en",
    )
    return env


@pytest.fixture
def engine(env: dict[str, str], tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    log = (tmp_path / "engine.log").open("w")
    proc = subprocess.Popen(
        [*CLI, "run", "--config", str(REPO / "routes.yaml")],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "engine running" in line, (tmp_path / "engine.log").read_text()
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    proc.stdout.close()
    log.close()


class TestReadmeRoundTrip:
    def test_sample_messages_round_trip_and_sigterm_stops_cleanly(
        self, engine: subprocess.Popen[str], env: dict[str, str], tmp_path: Path
    ) -> None:
        """The README's three commands show two AA, the journal rows and the records; SIGTERM exits 0."""
        to = env["MCH_MLLP_LISTEN"]
        config = ["--config", str(REPO / "routes.yaml")]
        samples = [
            str(REPO / "samples/adt_a04_registration.hl7"),
            str(REPO / "samples/oru_r01_blood_routine_gb18030.hl7"),
        ]
        sent = mch("send", *samples, "--to", to, env=env, cwd=tmp_path)
        assert sent.stdout.count("  AA  ") == 2, sent.stdout

        deadline = time.monotonic() + 20
        while True:
            rows = [
                json.loads(x)
                for x in mch("messages", "list", *config, "--json", env=env, cwd=tmp_path).stdout.splitlines()
            ]
            if all(d["status"] == "delivered" for r in rows for d in r["deliveries"]) and len(rows) == 2:
                break
            assert time.monotonic() < deadline, rows
            time.sleep(0.2)
        assert {r["control_id"] for r in rows} == {"SAMPLE-ADT-0001", "SAMPLE-ORU-0001"}
        assert {r["status"] for r in rows} == {"routed"}

        records = [
            json.loads(x)
            for x in mch("records", "list", *config, "--json", env=env, cwd=tmp_path).stdout.splitlines()
        ]
        by_type = {r["record_type"]: r for r in records}
        assert by_type["Person"]["record"]["person"]["name"] == "林晓雯"
        assert len(by_type["LabResult"]["record"]["observations"]) == 3
        assert by_type["LabResult"]["person_key"] == by_type["Person"]["person_key"]

        limited = mch("messages", "list", *config, "--json", "--limit", "1", env=env, cwd=tmp_path)
        assert len(limited.stdout.splitlines()) == 1

        engine.send_signal(signal.SIGTERM)
        assert engine.wait(30) == 0


class TestCommands:
    def test_check_accepts_the_shipped_routes(self, env: dict[str, str], tmp_path: Path) -> None:
        """`mch-engine check` on the repository's routes.yaml says OK and exits 0."""
        result = mch("check", "--config", str(REPO / "routes.yaml"), env=env, cwd=tmp_path)
        assert "OK" in result.stdout

    def test_check_reports_every_problem_with_its_line(self, env: dict[str, str], tmp_path: Path) -> None:
        """A broken routes.yaml: every problem as file:line: message, exit 1."""
        bad = tmp_path / "routes.yaml"
        bad.write_text(
            "version: 1\n"
            "channels:\n"
            "  his:\n"
            "    type: mllp\n"
            "    listn: 127.0.0.1:2575\n"
            "routes:\n"
            "  - name: r\n"
            "    from: [his]\n"
            "    mapping: mappings/missing.yaml\n"
            "    to: [record_stor]\n"
            "destinations:\n"
            "  record_store: {type: record_store}\n",
            encoding="utf-8",
        )
        result = mch("check", "--config", str(bad), env=env, cwd=tmp_path, check=False)
        assert result.returncode == 1
        lines = result.stderr.splitlines()
        assert any(line.startswith(f"{bad}:5:") and "listn" in line and "listen" in line for line in lines), (
            lines
        )
        assert any(":9:" in line and "missing.yaml" in line for line in lines), lines
        assert any(":10:" in line and "record_stor" in line and "record_store" in line for line in lines), (
            lines
        )

    def test_send_to_nobody_fails_with_a_clear_line(self, env: dict[str, str], tmp_path: Path) -> None:
        """Nothing listening: the refused connection says the engine may not be running there; exit 1."""
        result = mch(
            "send",
            str(REPO / "samples/adt_a04_registration.hl7"),
            "--to",
            f"127.0.0.1:{free_port()}",
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 1
        assert "the engine may not be running at that address/port" in result.stdout

    def test_chinese_is_the_default_operator_language(self, env: dict[str, str], tmp_path: Path) -> None:
        """Without --lang or MCH_LANG the operator text is Simplified Chinese."""
        env = {k: v for k, v in env.items() if k != "MCH_LANG"}
        result = mch("check", "--config", str(REPO / "routes.yaml"), env=env, cwd=tmp_path)
        assert "配置正确" in result.stdout

    def test_schema_export_writes_the_committed_schemas(self, env: dict[str, str], tmp_path: Path) -> None:
        """`mch-engine schema export DIR` writes one JSON Schema per record type, equal to docs/schemas."""
        out = tmp_path / "schemas"
        mch("schema", "export", str(out), env=env, cwd=tmp_path)
        written = sorted(p.name for p in out.glob("*.schema.json"))
        committed = sorted(p.name for p in (REPO / "docs/schemas").glob("*.schema.json"))
        assert written == committed and len(written) >= 12
        for name in written:
            assert (out / name).read_bytes() == (REPO / "docs/schemas" / name).read_bytes(), name

    def test_routes_reference_is_current(self, env: dict[str, str]) -> None:
        """docs/routes.md is what the settings models render (run `mch-engine docs` after a change)."""
        mch("docs", "--check", env=env, cwd=REPO)
