"""The db_poll channel against real PostgreSQL and MariaDB, through SQLAlchemy and through
pyodbc + unixODBC: rows written while the engine polls arrive once each, ties and late
commits included; failures are reported and move nothing."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from db_poll_support import BACKENDS, his_database, journaled, poll_routes, stored_exams
from sqlalchemy import text

from channels.db_poll.reader import PollError, reader_for
from engine import heartbeat
from monitors.engine_status import collect
from monitors.process_monitor import ProcessMonitor
from support import RunningEngine, free_port, wait_until

pytestmark = pytest.mark.services

BASE = datetime(2025, 4, 10, 9, 0, 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_rows_written_while_polling_arrive_once_each(tmp_path: Path, backend: str) -> None:
    """40 rows, three to a timestamp, committed one by one while the channel polls in batches
    of 4, and one row committed late with a time the cursor has passed: 41 journal rows, 41
    records, no row twice."""
    with his_database(backend) as his:
        routes = poll_routes(tmp_path, his, look_back="1h")
        with RunningEngine(routes) as engine:
            late = his.admin.connect()
            late_tx = late.begin()
            his.insert(late, 1000, BASE + timedelta(seconds=5))  # open: invisible to the poll
            for i in range(40):
                his.add(i + 1, BASE + timedelta(seconds=10 + i // 3))
                time.sleep(0.01)
            wait_until(lambda: len(journaled(engine.journal)) == 40, 30)
            late_tx.commit()
            late.close()
            wait_until(lambda: len(journaled(engine.journal)) == 41, 30)
            time.sleep(0.5)  # several more polls, look-back included: nothing comes twice
            ids = journaled(engine.journal)
            assert len(ids) == len(set(ids)) == 41
            assert {cid.split("@")[0] for cid in ids} == {str(i) for i in [*range(1, 41), 1000]}
            assert "1000@2025-04-10T09:00:05+08:00" in ids
            want = sorted(f"child-exam:HIS-VIEW:{i}" for i in [*range(1, 41), 1000])
            wait_until(lambda: stored_exams(engine.store()) == want, 30)


@pytest.mark.parametrize("backend", BACKENDS)
def test_times_a_millisecond_apart_are_neither_repeated_nor_skipped(tmp_path: Path, backend: str) -> None:
    """A HIS that stamps rows to the millisecond: the cursor keeps the fraction on every driver
    (MariaDB's ODBC driver drops it from a bound datetime, which would re-read the same batch
    for ever), so 30 rows in batches of 4 arrive once each and polling goes on."""
    with his_database(backend) as his:
        for i in range(30):
            his.add(i + 1, BASE + timedelta(milliseconds=i + 1))
        with RunningEngine(poll_routes(tmp_path, his)) as engine:
            wait_until(lambda: len(journaled(engine.journal)) == 30, 30)
            his.add(31, BASE + timedelta(milliseconds=500))
            wait_until(lambda: len(journaled(engine.journal)) == 31, 30)
            ids = journaled(engine.journal)
            assert len(set(ids)) == 31 and "31@2025-04-10T09:00:00.500000+08:00" in ids


def test_without_look_back_a_late_commit_is_lost(tmp_path: Path) -> None:
    """The hazard look-back exists for: plain watermarking passes over a row committed late."""
    with his_database("postgresql") as his, RunningEngine(poll_routes(tmp_path, his)) as engine:
        late = his.admin.connect()
        late_tx = late.begin()
        his.insert(late, 1000, BASE)
        his.add(1, BASE + timedelta(seconds=1))
        wait_until(lambda: len(journaled(engine.journal)) == 1, 30)
        late_tx.commit()
        late.close()
        his.add(2, BASE + timedelta(seconds=2))
        wait_until(lambda: len(journaled(engine.journal)) == 2, 30)
        time.sleep(0.5)
        assert [cid.split("@")[0] for cid in journaled(engine.journal)] == ["1", "2"]


def _status_problems(engine: RunningEngine) -> tuple[list[str], dict[str, object]]:
    """What `mch-engine status` reports, after the process wrote its heartbeat."""
    monitor = ProcessMonitor(engine.runtime)
    asyncio.run_coroutine_threadsafe(monitor.beat_now(), engine.loop).result(10)
    status = collect(engine.settings)
    channel = next(c for c in status.channels if c.name == "his_view")
    return status.problems, {"listening": channel.listening, "error": channel.error}


def test_a_column_gone_from_the_view_stops_the_channel_and_moves_nothing(tmp_path: Path) -> None:
    with his_database("postgresql") as his, RunningEngine(poll_routes(tmp_path, his)) as engine:
        his.add(1, BASE)
        wait_until(lambda: len(journaled(engine.journal)) == 1, 30)
        cursor_before = _cursor(engine)
        with his.admin.begin() as conn:
            conn.execute(text(f"DROP VIEW {his.view}"))
            conn.execute(text(f"CREATE VIEW {his.view} AS SELECT exam_id, updated_at FROM {his.table}"))
        his.add(2, BASE + timedelta(seconds=1))
        source = engine.runtime.sources[0]
        wait_until(lambda: source.health.error, 30)
        assert "columns" in source.health.error and "doctor" in source.health.error
        problems, shown = _status_problems(engine)
        assert any(p.startswith("channel_problem:his_view (columns:") for p in problems), problems
        assert shown["error"] == source.health.error
        assert _cursor(engine) == cursor_before and len(journaled(engine.journal)) == 1

        with his.admin.begin() as conn:  # the HIS puts the view back: the channel goes on
            conn.execute(text(f"DROP VIEW {his.view}"))
            conn.execute(text(f"CREATE VIEW {his.view} AS SELECT * FROM {his.table}"))
        wait_until(lambda: len(journaled(engine.journal)) == 2, 30)
        wait_until(lambda: source.health.error is None, 10)
        # The process's own heartbeat row may still carry the error for one interval.
        cleared = ([], {"listening": True, "error": None})
        wait_until(lambda: _status_problems(engine) == cleared, 3 * heartbeat.INTERVAL, interval=0.5)
        # Poll lag: the age of the last successful poll (whole seconds), a few seconds at most.
        channel = next(c for c in collect(engine.settings).channels if c.name == "his_view")
        assert channel.poll_lag_s is not None and 0 <= channel.poll_lag_s < 10


def test_an_unreachable_his_is_reported_and_retried_ever_later(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    with his_database("postgresql") as his:
        his.url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"
        with RunningEngine(poll_routes(tmp_path, his, timeout="2s")) as engine:
            source = engine.runtime.sources[0]
            wait_until(lambda: source.health.failures_in_a_row >= 3, 30)
            assert source.health.error.startswith("connect:")
            assert source.health.retry_in_s >= 0.4  # 0.1 s, 0.2 s, 0.4 s, …
            assert _cursor(engine) is None and journaled(engine.journal) == []


def test_a_query_error_is_reported(tmp_path: Path) -> None:
    with his_database("postgresql") as his:
        his.view = "no_such_view"
        with RunningEngine(poll_routes(tmp_path, his)) as engine:
            source = engine.runtime.sources[0]
            wait_until(lambda: source.health.error, 30)
            assert source.health.error.startswith("query:") and "no_such_view" in source.health.error


def test_an_empty_url_leaves_the_channel_off(tmp_path: Path) -> None:
    """`url: ${MCH_HIS_DB_URL:-}` with the variable unset: the engine runs, the channel sleeps."""
    with his_database("postgresql") as his:
        his.url = ""
        with RunningEngine(poll_routes(tmp_path, his)) as engine:
            his.add(1, BASE)
            time.sleep(0.5)
            assert journaled(engine.journal) == []
            problems, shown = _status_problems(engine)
            assert shown == {"listening": False, "error": None}
            assert not any("his_view" in p for p in problems)


def _cursor(engine: RunningEngine) -> tuple[str, str] | None:
    with engine.journal.connect() as conn:
        row = conn.execute(
            text("SELECT watermark, row_key FROM db_poll_cursors WHERE channel = 'his_view'")
        ).first()
    return None if row is None else (row[0], row[1])


@pytest.mark.parametrize(
    "url",
    [
        "odbc:DRIVER={{FreeTDS}};SERVER=127.0.0.1;PORT={port};DATABASE=his;UID=sa;PWD=geheim;TDS_Version=7.4",
        "mssql+pyodbc://sa:geheim@127.0.0.1:{port}/his?driver=FreeTDS&TDS_Version=7.4",
    ],
)
def test_sql_server_through_freetds_that_does_not_answer_is_a_clear_connect_error(url: str) -> None:
    """SQL Server cannot run here; FreeTDS through unixODBC is installed and really tried."""
    reader = reader_for(url.format(port=free_port()), timeout=3)
    started = time.monotonic()
    with pytest.raises(PollError) as caught:
        reader.fetch("SELECT TOP (1) * FROM v_child_exam", {})
    reader.close()
    assert caught.value.kind == "connect"
    assert "FreeTDS" in caught.value.detail and "Unable to connect" in caught.value.detail
    assert "geheim" not in str(caught.value)
    assert time.monotonic() - started < 30


def test_a_query_instead_of_a_view(tmp_path: Path) -> None:
    """`query:` is wrapped, not edited: its own WHERE holds, the cursor still orders the rows."""
    with his_database("mariadb") as his:
        routes = poll_routes(tmp_path, his)
        text_ = routes.read_text(encoding="utf-8").replace(
            f"    view: {his.view}\n", f"    query: select * from {his.table} where exam_id % 2 = 0\n"
        )
        routes.write_text(text_, encoding="utf-8")
        with RunningEngine(routes) as engine:
            for i in range(1, 9):
                his.add(i, BASE)
            wait_until(lambda: len(journaled(engine.journal)) == 4, 30)
            time.sleep(0.3)
            assert [cid.split("@")[0] for cid in journaled(engine.journal)] == ["2", "4", "6", "8"]


def test_a_reload_that_sets_the_url_starts_polling(tmp_path: Path) -> None:
    """Disabled at start (empty url), enabled by `reload` without a restart, then off again."""
    with his_database("postgresql") as his:
        url, his.url = his.url, ""
        routes = poll_routes(tmp_path, his)
        with RunningEngine(routes) as engine:
            his.add(1, BASE)
            time.sleep(0.3)
            assert journaled(engine.journal) == []
            routes.write_text(routes.read_text(encoding="utf-8").replace("url: ''", f"url: {url!r}"), "utf-8")
            assert engine.runtime.reloader.reload().result == "reloaded"  # type: ignore[union-attr]
            wait_until(lambda: len(journaled(engine.journal)) == 1, 30)
            routes.write_text(routes.read_text(encoding="utf-8").replace(f"url: {url!r}", "url: ''"), "utf-8")
            assert engine.runtime.reloader.reload().result == "reloaded"  # type: ignore[union-attr]
            wait_until(lambda: not engine.runtime.sources[0].health.enabled, 10)
            time.sleep(1.2)  # a poll in flight at the switch has finished
            his.add(2, BASE + timedelta(seconds=1))
            time.sleep(0.5)
            assert len(journaled(engine.journal)) == 1
