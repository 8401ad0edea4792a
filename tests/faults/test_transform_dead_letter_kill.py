"""kill -9 between a transform failure's journal status and its dead letter.

A message whose mapping fails is marked `failed` and dead-lettered. Recovery at start
re-reads only `received` messages, so if the status were committed without the dead
letter, a kill in between would leave the message failed, explained nowhere, and never
looked at again. The failpoint `transform_dead_letter` (core/failpoints.py) makes the
engine SIGKILL itself exactly there; after a restart the on-call must find the message
in `deadletter list`.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from core.failpoints import ENV, TRANSFORM_DEAD_LETTER
from engine_process import EngineProcess, LockStepStream, mch_json, wait_for
from fault_setup import EMBEDDED, RABBITMQ_PG, adt, engine_setup, rows

pytestmark = [pytest.mark.services, pytest.mark.slow]


@pytest.mark.parametrize("kind", [EMBEDDED, RABBITMQ_PG])
def test_kill_between_failed_status_and_dead_letter_loses_nothing(tmp_path: Path, kind: str) -> None:
    """PID-7 19941399 fails the mapping; SIGKILL at the failpoint; after restart it is a dead letter."""
    tag = uuid.uuid4().hex[:6].upper()
    cid = f"K{tag}"
    bad = adt(cid, f"H{tag}").replace(b"|19940315|", b"|19941399|")  # month 13: the mapping fails

    with engine_setup(kind, tmp_path) as setup:
        engine = EngineProcess(setup.routes)
        try:
            engine.start(env={ENV: TRANSFORM_DEAD_LETTER})
            # The ACK follows the journal commit; the kill may come before it reaches us.
            LockStepStream(engine.port(), [bad], [cid], connections=1, timeout=10).run(30)
            assert engine.wait_dead() == -signal.SIGKILL, engine.log_tail()

            journaled = rows(setup.journal, "select id from journal_messages where control_id = :c", c=cid)
            assert len(journaled) == 1, "the message was journaled before the kill"
            jid = journaled[0].id
            # Killed before the commit: nothing of the failure was saved, so the message is still
            # `received` and the next start transforms it again.
            assert [r.status for r in rows(setup.journal, "select status from journal_messages")] == [
                "received"
            ]

            engine.start()  # no failpoint this time: recovery runs at start
            wait_for(
                lambda: mch_json(setup.routes, "deadletter", "list"),
                30,
                "the failed message in `deadletter list` after the restart",
                engine,
                describe=lambda: rows(setup.journal, "select id, status from journal_messages"),
            )
            listed = mch_json(setup.routes, "deadletter", "list")
            assert [(d["journal_id"], d["stage"], d["route"]) for d in listed] == [
                (jid, "transform", "persons")
            ]
            assert "PID-7" in listed[0]["reason"]
            status = rows(setup.journal, "select status from journal_messages where id = :j", j=jid)
            assert [s.status for s in status] == ["failed"]
            assert engine.stop() == 0
        finally:
            engine.kill()
