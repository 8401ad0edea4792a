"""kill -9 between a dropped file's journal commit and its move out of `processing/`.

The file source moves a file to done/ or error/ only after every message of it is committed.
A kill in between leaves the file in `processing/` with all its messages in the journal; the
restarted engine must finish it without journaling any message twice (a rejected message has
no dedup key in the journal, so the journal alone would double it) and without losing one.
The failpoint `file_journaled` (channels/file_source.py, engine/failpoints.py) makes the engine
SIGKILL itself exactly there, so the kill lands in that window every run.
"""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

import pytest

from channels.file_source import FAILPOINT_JOURNALED
from engine.failpoints import ENV
from engine_process import EngineProcess, wait_for
from fault_setup import EMBEDDED, RABBITMQ_PG, engine_setup, oru, rows

pytestmark = [pytest.mark.services, pytest.mark.slow]

FILE_CHANNEL = """channels:
  lab_files:
    type: file
    path: inbox
    poll: 0.1s
    settle: 0.3s
"""


@pytest.mark.parametrize("kind", [EMBEDDED, RABBITMQ_PG])
def test_kill_between_journal_and_move_neither_loses_nor_doubles(tmp_path: Path, kind: str) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    good = [oru(f"K{tag}-{i}", f"KF{tag}{i}", f"H{tag}") for i in range(3)]
    bad = oru("", f"KF{tag}X", f"H{tag}")  # no control id: rejected
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    edit = {"channels:\n": FILE_CHANNEL, "from: [hospital, lis_gbk]": "from: [hospital, lis_gbk, lab_files]"}

    with engine_setup(kind, tmp_path, routes_edit=edit) as setup:
        engine = EngineProcess(setup.routes)
        try:
            engine.start(env={ENV: FAILPOINT_JOURNALED})
            (inbox / ".drop.tmp").write_bytes(b"\n".join([good[0], good[1], bad, good[2]]))
            (inbox / ".drop.tmp").rename(inbox / "drop.hl7")
            assert engine.wait_dead() == -signal.SIGKILL, engine.log_tail()

            # Killed after the commit, before the move: every message journaled, the file held back.
            assert (inbox / "processing" / "drop.hl7").exists()
            assert not (inbox / "error" / "drop.hl7").exists()
            journaled = "select peer, status, duplicates from journal_messages order by peer"
            before = [tuple(r) for r in rows(setup.journal, journaled)]
            assert [(peer, status == "rejected") for peer, status, _ in before] == [
                ("file:drop.hl7#1", False),
                ("file:drop.hl7#2", False),
                ("file:drop.hl7#3", True),
                ("file:drop.hl7#4", False),
            ]

            engine.start()  # no failpoint: the file in processing/ is finished
            wait_for(
                lambda: (inbox / "error" / "drop.hl7").exists(),
                30,
                "the file moved to error/ after the restart",
                engine,
                describe=lambda: sorted(p.name for p in inbox.rglob("*")),
            )
            assert "message 3" in (inbox / "error" / "drop.hl7.reason").read_text("utf-8")
            after = [tuple(r) for r in rows(setup.journal, journaled)]
            assert [(peer, dups) for peer, _, dups in after] == [(peer, 0) for peer, _, _ in before]
            wait_for(
                lambda: rows(setup.store, "select count(*) from records")[0][0] == 3,
                30,
                "the three results stored once each",
                engine,
            )
            assert engine.stop() == 0
        finally:
            engine.kill()
