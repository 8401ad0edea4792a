"""kill -9 between journaling derived records and deleting them from the record store's outbox.

The `derived` channel journals outbox rows in one commit and deletes them in another (the
store may be another database). The failpoint `derived_journaled` (core/failpoints.py) makes
the engine SIGKILL itself between the two; after a restart the rows are journaled again with
the same bytes and control id, which the journal counts as duplicates: the receiver gets each
derived record once.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest
from derived_support import LOW_HB, REGISTRATION, posted, receiver, relay_routes

from channels.mllp.client import send_all
from core.database import make_engine
from core.failpoints import DERIVED_JOURNALED, ENV
from engine_process import EngineProcess, wait_for
from fault_setup import rows
from support import free_port

pytestmark = [pytest.mark.slow]


def _send(port: int, message: bytes) -> None:
    asyncio.run(send_all("127.0.0.1", port, [message]))


def test_kill_between_journal_and_outbox_delete_delivers_each_derived_record_once(tmp_path: Path) -> None:
    port = free_port()
    with receiver() as (url, seen):
        routes = relay_routes(tmp_path, url, port=port, patient=False)
        db = make_engine(f"sqlite:///{tmp_path}/engine.db")
        engine = EngineProcess(routes)
        try:
            engine.start(env={ENV: DERIVED_JOURNALED})
            _send(port, REGISTRATION)  # graded at once: one derived record, journaled, then the kill
            assert engine.wait_dead() == -signal.SIGKILL, engine.log_tail()

            journaled = rows(db, "select id, control_id from journal_messages where channel = 'rules'")
            [first] = journaled
            outbox = rows(db, "select id from derived_outbox")
            assert [f"derived:{r.id}" for r in outbox] == [first.control_id], "still in the outbox"

            engine.start()
            wait_for(
                lambda: not rows(db, "select id from derived_outbox"),
                30,
                "the outbox emptied after the restart",
                engine,
            )
            _send(port, LOW_HB)  # the same day graded again: a changed record, a new outbox row
            wait_for(
                lambda: any(r.get("above_clinical") for r in posted(seen, "/staff")),
                30,
                "the changed grading at the staff receiver",
                engine,
            )
            wait_for(
                lambda: (
                    not rows(db, "select destination from journal_deliveries where status != 'delivered'")
                ),
                30,
                "every delivery done",
                engine,
            )
            after = rows(
                db,
                "select control_id, duplicates, status from journal_messages where channel = 'rules' order by id",
            )
            assert (after[0].control_id, after[0].duplicates) == (first.control_id, 1)
            assert len({r.control_id for r in after}) == len(after) == 2
            assert {r.status for r in after} == {"routed"}
            staff = posted(seen, "/staff")
            assert [(r["colour"], r["above_clinical"]) for r in staff] == [("green", False), ("yellow", True)]
            assert engine.stop() == 0
        finally:
            engine.kill()
            db.dispose()
