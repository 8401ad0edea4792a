"""kill -9 of the engine in the middle of a 5,000-message MLLP stream, then a restart.

The guarantee: every message that got an AA is stored exactly once; what the sender got no
answer for, sent again, is stored once too (answered with the original ACK if the engine had
journaled it before it died).
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from engine_process import EngineProcess, LockStepStream, mch_json, wait_for
from fault_setup import EMBEDDED, RABBITMQ_PG, adt, engine_setup, rows, wait_delivered
from support import REPORT, scalar

pytestmark = [pytest.mark.services, pytest.mark.slow]

MESSAGES = 5000
CONNECTIONS = 8
KILL_AT = 2000  # ACKs received before the kill


def settled_set(engine: Any, sql: str) -> set[Any]:
    """What the journal holds once the killed engine's last commit has landed: a commit the
    database had received when the client died still completes on the server a moment later,
    so read until two reads half a second apart agree."""
    found = {r[0] for r in rows(engine, sql)}
    for _ in range(20):
        time.sleep(0.5)
        again = {r[0] for r in rows(engine, sql)}
        if again == found:
            return found
        found = again
    return found


@pytest.mark.parametrize("kind", [RABBITMQ_PG, EMBEDDED])
def test_kill_9_mid_stream_then_restart_stores_every_message_once(kind: str, tmp_path: Path) -> None:
    """SIGKILL after ~2,000 of 5,000 ACKs; restart; resend the unanswered: 5,000 persons, one each."""
    tag = uuid.uuid4().hex[:6].upper()
    cids = [f"K{tag}{n:05d}" for n in range(MESSAGES)]
    payloads = [adt(cid, f"{tag}{n:07d}") for n, cid in enumerate(cids)]

    with engine_setup(kind, tmp_path) as setup, EngineProcess(setup.routes) as engine:
        stream = LockStepStream(engine.port(), payloads, cids, connections=CONNECTIONS).start()
        wait_for(lambda: stream.answered >= KILL_AT, 60, "ACKs before the kill", engine)
        engine.kill()
        killed_at = time.monotonic()
        stream.join(30)

        acked, unanswered = stream.acked, stream.unanswered
        assert len(acked) + len(unanswered) == MESSAGES, f"other answers than AA: {set(stream.codes)}"
        assert KILL_AT <= len(acked) < MESSAGES and unanswered, "the kill did not land mid-stream"

        # An AA means committed: the dead engine's journal already holds every one of them.
        journaled = settled_set(setup.journal, "select control_id from journal_messages")
        missing = [cids[i] for i in acked if cids[i] not in journaled]
        assert not missing, f"{len(missing)} acknowledged messages are not in the journal: {missing[:5]}"
        in_flight = sum(1 for i in unanswered if cids[i] in journaled)
        # What the kill interrupted: journaled but not transformed, published but not stored.
        untransformed = scalar(
            setup.journal, "select count(*) from journal_messages where status = 'received'"
        )
        undelivered = len(journaled) - scalar(
            setup.journal, "select count(*) from journal_deliveries where status = 'delivered'"
        )

        engine.start()
        stream.resend_unanswered(engine.port())

        wait_delivered(setup, engine, MESSAGES, 90, "every delivery delivered after the restart")
        recovered_in = time.monotonic() - killed_at

        # Exactly once: one journal row and one Person per control id, nothing else.
        per_cid = rows(
            setup.store,
            "select source_control_id, count(*) from persons group by source_control_id",
        )
        counts = {cid: n for cid, n in per_cid}
        assert set(counts) == set(cids), (
            f"missing {len(set(cids) - set(counts))}, unexpected {len(set(counts) - set(cids))}"
        )
        assert max(counts.values()) == 1, [c for c, n in counts.items() if n > 1][:5]
        assert scalar(setup.store, "select count(*) from person_identifiers") == MESSAGES
        assert scalar(setup.journal, "select count(*) from journal_messages") == MESSAGES
        assert scalar(setup.journal, "select count(distinct control_id) from journal_messages") == MESSAGES
        assert scalar(setup.journal, "select count(*) from journal_messages where status != 'routed'") == 0
        assert scalar(setup.journal, "select count(*) from journal_deliveries") == MESSAGES
        assert (
            scalar(setup.journal, "select count(*) from journal_deliveries where status != 'delivered'") == 0
        )
        # Each Person came from its own journaled message (a resend never made a second row).
        mismatched = scalar(
            setup.store,
            "select count(*) from persons p join journal_messages j on j.control_id = p.source_control_id "
            "where p.journal_id != j.id",
        )
        assert mismatched == 0
        # The sender's repeats of journaled messages were answered as duplicates, not processed again.
        assert scalar(setup.journal, "select coalesce(sum(duplicates), 0) from journal_messages") == in_flight
        assert mch_json(setup.routes, "deadletter", "list") == []
        assert engine.stop() == 0

    REPORT.append(
        f"faults kill -9 [{kind}]: {MESSAGES} ADT^A04 on {CONNECTIONS} connections, killed after "
        f"{len(acked)} AA ({stream.seconds:.1f}s); {len(unanswered)} unanswered resent "
        f"({in_flight} already journaled → original ACK, dup); at the kill {untransformed} journaled "
        f"untransformed, {undelivered} undelivered; stored {len(counts)} persons, "
        f"max 1 per control id; kill → all delivered {recovered_in:.1f}s"
    )
