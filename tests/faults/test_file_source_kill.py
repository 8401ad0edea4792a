"""kill -9 between a dropped file's journal commit and its move out of `processing/`.

The file source moves a file to done/ or error/ only after every message of it is committed.
A kill in between leaves the file in `processing/` with all its messages in the journal; the
restarted engine must finish it without journaling any message twice (a rejected message has
no dedup key in the journal, so the journal alone would double it) and without losing one.
The failpoint `file_journaled` (channels/file/source.py, core/failpoints.py) makes the engine
SIGKILL itself exactly there, so the kill lands in that window every run.
"""

from __future__ import annotations

import signal
import time
import uuid
from pathlib import Path

import pytest

from channels.file.source import FAILPOINT_JOURNALED
from core.failpoints import ENV
from engine_process import EngineProcess, RefusingProxy, wait_for
from fault_setup import EMBEDDED, RABBITMQ_PG, engine_setup, oru, rows, through_port
from support import require_service

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


def test_journal_outage_keeps_the_file_until_the_journal_is_back(tmp_path: Path) -> None:
    """The PostgreSQL journal stops answering (a proxy refuses): a dropped file stays in
    `processing/`, `status` names the problem; once the journal is back the file is finished,
    each message journaled once (the rejected one too), and moved to error/."""
    require_service("127.0.0.1", 5432, "PostgreSQL")
    tag = uuid.uuid4().hex[:6].upper()
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    edit = {"channels:\n": FILE_CHANNEL, "from: [hospital, lis_gbk]": "from: [hospital, lis_gbk, lab_files]"}
    with (
        RefusingProxy("127.0.0.1", 5432) as proxy,
        engine_setup(RABBITMQ_PG, tmp_path, routes_edit=edit) as setup,
    ):
        direct = setup.journal_url
        content = setup.routes.read_text(encoding="utf-8")
        setup.routes.write_text(
            content.replace(repr(direct), repr(through_port(direct, proxy.port)), 1), "utf-8"
        )
        engine = EngineProcess(setup.routes)
        try:
            engine.start()
            proxy.refuse()
            (inbox / ".out.tmp").write_bytes(
                oru(f"J{tag}-1", f"JF{tag}1", f"H{tag}") + oru("", f"JF{tag}X", f"H{tag}")
            )
            (inbox / ".out.tmp").rename(inbox / "out.hl7")
            wait_for(
                lambda: (
                    (inbox / "processing" / "out.hl7").exists()
                    and "journal_unavailable" in engine_log(engine)
                ),
                60,
                "the file held in processing/ while the journal is away",
                engine,
            )
            time.sleep(1.0)  # several polls with the journal away
            assert (inbox / "processing" / "out.hl7").exists()

            proxy.accept()
            wait_for(lambda: (inbox / "error" / "out.hl7").exists(), 90, "the file finished", engine)
            journaled = rows(
                setup.journal, "select peer, status, duplicates from journal_messages order by peer"
            )
            assert [(peer, status == "rejected", dups) for peer, status, dups in journaled] == [
                ("file:out.hl7#1", False, 0),
                ("file:out.hl7#2", True, 0),
            ]
            assert engine.stop() == 0
        finally:
            engine.kill()


def engine_log(engine: EngineProcess) -> str:
    return (engine.workdir / f"{engine.name}.log").read_text(encoding="utf-8", errors="replace")
