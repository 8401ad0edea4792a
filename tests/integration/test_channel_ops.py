"""An operator stops, pauses and starts a channel (`mch-engine channel`), run as the on-call
runs it: the CLI as a separate process, the engine running (support.RunningEngine), on the
embedded default and on PostgreSQL + RabbitMQ; and a polled channel stopped on PostgreSQL."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from db_poll_support import his_database, journaled, poll_routes
from test_operator_actions import Backend, adt, audit_log, backend, mch

from monitors.engine_status import collect
from support import RunningEngine, delivery_rows, free_port, refused, wait_until, write_routes

__all__ = ["backend"]  # the fixture: embedded SQLite + memory://, and PostgreSQL + RabbitMQ

HIS_ID = "0010077001"


def channel_state(config: Path, name: str = "hospital") -> tuple[str, list[str]]:
    answer = mch(config, "status", "--json")
    status = json.loads(answer.stdout)
    state = next(c["state"] for c in status["channels"] if c["name"] == name)
    return state, status["problems"]


def test_stop_refuses_new_connections_keeps_across_a_restart_until_start(
    backend: Backend, tmp_path: Path
) -> None:
    config = backend.routes(tmp_path)
    with RunningEngine(config) as engine:
        port = engine.port()
        acks = engine.send([adt(f"CH-{i}", HIS_ID) for i in range(3)])
        assert all(b"MSA|AA" in (a or b"") for a in acks)

        stop = mch(config, "channel", "stop", "hospital", "--as", "王芳", "--wait")
        assert stop.returncode == 0, stop.stdout + stop.stderr
        assert "channel hospital stopped" in stop.stdout
        assert refused(port)
        # What was received before the stop is still transformed and delivered.
        wait_until(lambda: [s for s, _ in delivery_rows(engine, "record_store")] == ["delivered"] * 3, 30)

        state, problems = channel_state(config)
        assert state == "stopped"
        assert "channel_not_listening:hospital" not in problems  # held by an operator, not down
        text = mch(config, "status")
        assert "channel hospital stopped by 王芳" in text.stdout
        assert "lis_gbk" in engine.runtime.ports()  # the other channel goes on

    with RunningEngine(config) as engine:  # a restart keeps it stopped
        assert "hospital" not in engine.runtime.ports()
        assert refused(port)
        start = mch(config, "channel", "start", "hospital", "--as", "王芳", "--wait")
        assert start.returncode == 0, start.stdout + start.stderr
        assert not refused(port)
        assert b"MSA|AA" in (engine.send([adt("CH-after", HIS_ID)])[0] or b"")
        assert channel_state(config)[0] == "running"

    entries = [(e["actor"], e["action"], e["target"]) for e in audit_log(config)]
    assert ("王芳", "channel_stop", "hospital") in entries
    assert ("王芳", "channel_start", "hospital") in entries


def test_a_pause_ends_by_itself(backend: Backend, tmp_path: Path) -> None:
    config = backend.routes(tmp_path)
    with RunningEngine(config) as engine:
        port = engine.port()
        paused = mch(config, "channel", "pause", "hospital", "--for", "4s", "--wait")
        assert paused.returncode == 0, paused.stdout + paused.stderr
        assert "paused until" in paused.stdout
        assert refused(port)
        held = next(c for c in collect(engine.settings).channels if c.name == "hospital")
        assert held.state == "paused"  # read in this process: the pause is short
        wait_until(lambda: not refused(port), 10)
        assert b"MSA|AA" in (engine.send([adt("CH-back", HIS_ID)])[0] or b"")
        assert channel_state(config)[0] == "running"


def test_pause_needs_a_duration_and_an_unknown_channel_is_refused(tmp_path: Path) -> None:
    config = write_routes(tmp_path, database=f"sqlite:///{tmp_path / 'engine.db'}")
    assert mch(config, "channel", "pause", "hospital").returncode == 2
    unknown = mch(config, "channel", "stop", "nosuch")
    assert unknown.returncode == 2 and "no channel named nosuch" in unknown.stdout


@pytest.mark.services
def test_a_stopped_polled_channel_does_not_poll_until_started(tmp_path: Path) -> None:
    base = datetime(2025, 4, 10, 9, 0, 0)
    with his_database("postgresql") as his:
        routes = poll_routes(tmp_path, his)
        with RunningEngine(routes) as engine:
            his.add(1, base)
            wait_until(lambda: len(journaled(engine.journal)) == 1, 30)
            stop = mch(routes, "channel", "stop", "his_view", "--wait")
            assert stop.returncode == 0, stop.stdout + stop.stderr
            his.add(2, base + timedelta(seconds=1))
            time.sleep(1.5)  # fifteen polls' time at `every: 0.1s`
            assert len(journaled(engine.journal)) == 1
            start = mch(routes, "channel", "start", "his_view", "--wait")
            assert start.returncode == 0, start.stdout + start.stderr
            wait_until(lambda: len(journaled(engine.journal)) == 2, 30)


def test_a_live_reload_keeps_a_stopped_channel_stopped_even_when_it_moves(tmp_path: Path) -> None:
    config = write_routes(tmp_path, database=f"sqlite:///{tmp_path / 'engine.db'}")
    with RunningEngine(config) as engine:
        old = engine.port()
        assert mch(config, "channel", "stop", "hospital", "--wait").returncode == 0
        new = free_port()
        text = config.read_text(encoding="utf-8").replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        config.write_text(text, encoding="utf-8")
        reload = mch(config, "reload")
        assert reload.returncode == 0, reload.stdout + reload.stderr
        assert refused(old) and refused(new)
        assert mch(config, "channel", "start", "hospital", "--wait").returncode == 0
        assert not refused(new)
        assert b"MSA|AA" in (engine.send([adt("CH-moved", HIS_ID)])[0] or b"")
