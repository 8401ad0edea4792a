"""kill -9 of the engine between reading rows from the HIS and journaling them.

The failpoint `db_poll_fetched` (core/failpoints.py) makes the engine SIGKILL itself right
after a poll read a non-empty batch and before the batch and its cursor are committed. The
rows were read but neither journaled nor passed by the cursor, so the next start reads them
again: every row ends in the journal and the record store exactly once.
"""

from __future__ import annotations

import signal
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from db_poll_support import his_database, journaled, poll_routes, stored_exams
from sqlalchemy import create_engine, text

from core.failpoints import DB_POLL_FETCHED, ENV
from engine_process import EngineProcess, wait_for

pytestmark = [pytest.mark.services, pytest.mark.slow]

BASE = datetime(2025, 4, 10, 9, 0, 0)


@pytest.mark.parametrize("backend", ["postgresql", "postgresql-odbc"])
def test_kill_between_fetch_and_journal_loses_and_doubles_nothing(tmp_path: Path, backend: str) -> None:
    with his_database(backend) as his:
        routes = poll_routes(tmp_path, his, batch=3, look_back="1h")
        engine_db = create_engine(f"sqlite:///{tmp_path / 'engine.db'}")
        engine = EngineProcess(routes)
        try:
            for i in range(6):  # two timestamps, three rows each
                his.add(i + 1, BASE + timedelta(seconds=i // 3))
            engine.start()
            wait_for(lambda: len(journaled(engine_db)) == 6, 30, "the first six rows journaled", engine)
            assert engine.stop() == 0

            cursor = _cursor(engine_db)
            engine.start(env={ENV: DB_POLL_FETCHED})  # polls, finds nothing new, runs on
            for i in range(6, 12):  # the first shares the sixth row's timestamp
                his.add(i + 1, BASE + timedelta(seconds=1 + (i - 6) // 2))
            assert engine.wait_dead() == -signal.SIGKILL, engine.log_tail()
            assert len(journaled(engine_db)) == 6, "killed before the batch was journaled"
            assert _cursor(engine_db) == cursor, "the cursor did not move without its rows"

            engine.start()
            wait_for(lambda: len(journaled(engine_db)) == 12, 30, "all twelve rows journaled", engine)
            want = sorted(f"child-exam:HIS-VIEW:{i}" for i in range(1, 13))
            wait_for(lambda: stored_exams(engine_db) == want, 30, "twelve exams in the record store", engine)
            ids = journaled(engine_db)
            assert len(ids) == len(set(ids)) == 12
            assert sorted(int(cid.split("@")[0]) for cid in ids) == list(range(1, 13))
            assert engine.stop() == 0
        finally:
            engine.kill()
            engine_db.dispose()


def _cursor(db: object) -> tuple[str, str] | None:
    with db.connect() as conn:  # type: ignore[attr-defined]
        row = conn.execute(text("SELECT watermark, row_key FROM db_poll_cursors")).first()
    return None if row is None else (row[0], row[1])
