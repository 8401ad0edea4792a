"""The cursor moves in the transaction that journals its rows, on SQLite and on PostgreSQL,
and `mch-engine db-check` shows a real view's rows as the mapping reads them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from db_poll_support import his_database, journaled, poll_routes, stored_exams
from sqlalchemy import Connection, Engine, text

from channels.db_poll import cursor as cursors
from channels.db_poll.rows import entry
from engine import journal
from support import REPO, RunningEngine, engine_database, free_port, pg_schema, wait_until

pytestmark = pytest.mark.services

SHANGHAI = ZoneInfo("Asia/Shanghai")
BASE = datetime(2025, 4, 10, 9, 0, 0)


@pytest.fixture(params=["sqlite", "postgresql"])
def engine_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine_database(request.param, tmp_path) as engine:
        yield engine


def rows_of(exam_ids: range) -> list[journal.Entry]:
    return [
        entry(
            "his_view",
            "his_view/v",
            {"exam_id": i, "updated_at": BASE, "x": "李"},
            "exam_id",
            "updated_at",
            SHANGHAI,
        )
        for i in exam_ids
    ]


def test_rows_and_cursor_commit_together_or_not_at_all(engine_db: Engine) -> None:
    journal.ensure_schema(engine_db)
    cursors.ensure_schema(engine_db)
    writer = journal.JournalWriter(engine_db)

    def fail(conn: Connection) -> None:
        cursors.save_in(conn, "his_view", cursors.Cursor(BASE, 3), 3)
        raise RuntimeError("the commit fails after the cursor moved")

    with pytest.raises(RuntimeError):
        writer.commit_with(rows_of(range(1, 4)), fail)
    assert cursors.load(engine_db, "his_view") is None and journaled(engine_db) == []

    outcomes = writer.commit_with(
        rows_of(range(1, 4)), lambda conn: cursors.save_in(conn, "his_view", cursors.Cursor(BASE, 3), 3)
    )
    assert [o.duplicate for o in outcomes if isinstance(o, journal.Written)] == [False] * 3
    assert cursors.load(engine_db, "his_view") == cursors.Cursor(BASE, 3)
    assert journaled(engine_db) == [f"{i}@2025-04-10T09:00:00+08:00" for i in range(1, 4)]


def test_a_journal_on_postgresql(tmp_path: Path) -> None:
    """The engine's own database on PostgreSQL, the HIS on MariaDB: rows arrive once each."""
    with (
        pg_schema() as url,
        his_database("mariadb") as his,
        RunningEngine(poll_routes(tmp_path, his, database=url, look_back="1h")) as engine,
    ):
        for i in range(10):
            his.add(i + 1, BASE + timedelta(seconds=i // 4))
        wait_until(lambda: len(journaled(engine.journal)) == 10, 30)
        want = sorted(f"child-exam:HIS-VIEW:{i}" for i in range(1, 11))
        wait_until(lambda: stored_exams(engine.store()) == want, 30)
        ids = journaled(engine.journal)
        assert len(set(ids)) == 10
        with engine.journal.connect() as conn:
            moved = conn.execute(text("SELECT rows FROM db_poll_cursors WHERE channel = 'his_view'")).scalar()
        assert moved == 10


def mch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", *args, "--lang", "en"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=False,
    )


def test_db_check_shows_rows_as_the_mapping_reads_them() -> None:
    with his_database("postgresql-odbc") as his:
        his.add(2, BASE + timedelta(seconds=1))
        his.add(1, BASE)
        done = mch(
            "db-check", his.url, "--view", his.view, "--watermark", "updated_at", "--key", "exam_id", "--json"
        )
        assert done.returncode == 0, done.stderr
        shown = [json.loads(line) for line in done.stdout.splitlines()]
        assert [r["exam_id"] for r in shown] == [1, 2]  # in the channel's order
        assert shown[0]["child_name"] == "李沐瑶" and shown[0]["weight_kg"] == "7.60"
        assert shown[0]["updated_at"] == "2025-04-10T09:00:00+08:00"
        assert "2 rows read" in done.stderr


def test_db_check_says_why_it_cannot_connect() -> None:
    url = f"odbc:DRIVER={{FreeTDS}};SERVER=127.0.0.1;PORT={free_port()};UID=sa;PWD=geheim;TDS_Version=7.4"
    done = mch("db-check", url, "--view", "v_child_exam", "--timeout", "3")
    assert done.returncode == 1 and done.stdout == ""
    assert "connect failed" in done.stderr and "Unable to connect" in done.stderr
    assert "PWD=***" in done.stderr and "geheim" not in done.stderr


def test_db_check_needs_a_view_or_a_query() -> None:
    done = mch("db-check", "sqlite:///his.db")
    assert done.returncode == 2 and "give one of --view or --query" in done.stderr
