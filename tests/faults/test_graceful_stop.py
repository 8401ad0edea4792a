"""SIGTERM or SIGPWR (a UPS on battery) in the middle of a stream: a clean, bounded stop.

The guarantee: the engine stops taking connections at once, answers every message it had
already journaled, exits 0 within the stated bound, and after a restart every acknowledged
message is delivered; what the senders got no answer for, sent again, is stored once.
"""

from __future__ import annotations

import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from channels.mllp.framing import frame
from engine.shutdown import DEFAULT_STOP_GRACE, HARD_STOP_MARGIN
from engine_process import EngineProcess, LockStepStream, wait_for
from fault_setup import EMBEDDED, adt, engine_setup, rows, wait_delivered
from support import REPORT, scalar

pytestmark = [pytest.mark.slow]

MESSAGES = 2400
CONNECTIONS = 6
SIGNAL_AT = 600  # ACKs received before the signal
BOUND = DEFAULT_STOP_GRACE + HARD_STOP_MARGIN  # docs/operations.md, "停机与 UPS"


def late_sender(port: int, payload: bytes, engine: EngineProcess) -> tuple[int, int, int]:
    """New connections after the signal, each sending one message, until the engine is gone:
    (attempts refused while the engine was still running, refused in all, answered)."""
    refused_alive = refused = answered = 0
    while True:
        alive = engine.alive()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
                sock.sendall(frame(payload))
                sock.settimeout(2)
                if sock.recv(4096):
                    answered += 1
        except ConnectionRefusedError:
            refused += 1
            refused_alive += alive
        except OSError:  # reset or closed before any answer: not accepted either
            pass
        if not alive:
            return refused_alive, refused, answered
        time.sleep(0.005)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGPWR], ids=["SIGTERM", "SIGPWR"])
def test_stop_signal_mid_stream_answers_the_journaled_and_loses_nothing(
    sig: signal.Signals, tmp_path: Path
) -> None:
    tag = uuid.uuid4().hex[:6].upper()
    cids = [f"G{tag}{n:05d}" for n in range(MESSAGES)]
    payloads = [adt(cid, f"{tag}{n:07d}") for n, cid in enumerate(cids)]
    late_cid = f"L{tag}"

    with engine_setup(EMBEDDED, tmp_path) as setup, EngineProcess(setup.routes) as engine:
        port = engine.port()
        stream = LockStepStream(port, payloads, cids, connections=CONNECTIONS).start()
        wait_for(lambda: stream.answered >= SIGNAL_AT, 60, "ACKs before the signal", engine)
        engine.proc.send_signal(sig)  # type: ignore[union-attr]
        signalled = time.monotonic()
        wait_for(lambda: "stopping the engine…" in engine.lines, 10, "the engine saw the signal", engine)
        refused_alive, refused_total, late_answers = late_sender(port, adt(late_cid, f"L{tag}"), engine)
        code = engine.wait_dead(BOUND + 5)
        stopped_in = time.monotonic() - signalled
        stream.join(30)

        assert code == 0, engine.log_tail()
        assert stopped_in <= BOUND, f"stopped in {stopped_in:.1f}s, bound {BOUND:.0f}s"
        acked, unanswered = stream.acked, stream.unanswered
        assert len(acked) + len(unanswered) == MESSAGES, f"other answers than AA: {set(stream.codes)}"
        assert SIGNAL_AT <= len(acked) < MESSAGES, "the signal did not land mid-stream"
        # After the signal no new connection is served: refused, or cut before any answer.
        assert late_answers == 0 and refused_total >= 1
        journaled = {r[0] for r in rows(setup.journal, "select control_id from journal_messages")}
        assert late_cid not in journaled
        # Every ACK was committed first, and every message committed got its ACK out.
        assert {cids[i] for i in acked} == journaled
        unfinished_at_stop = scalar(
            setup.journal, "select count(*) from journal_messages where status = 'received'"
        )

        engine.start()
        stream.resend_unanswered(engine.port())
        wait_delivered(setup, engine, MESSAGES, 60, "every message delivered after the restart")
        stored = rows(
            setup.store, "select source_control_id, count(*) from persons group by source_control_id"
        )
        assert {cid for cid, _ in stored} == set(cids)
        assert max(n for _, n in stored) == 1
        assert scalar(setup.journal, "select count(*) from journal_messages where status != 'routed'") == 0
        assert (
            scalar(setup.journal, "select count(*) from journal_deliveries where status != 'delivered'") == 0
        )
        assert scalar(setup.journal, "select count(*) from dead_letters") == 0
        assert engine.stop() == 0

    REPORT.append(
        f"faults graceful stop [{sig.name}, embedded]: {MESSAGES} ADT^A04 on {CONNECTIONS} connections, "
        f"signal after {SIGNAL_AT}+ ACKs; {len(acked)} AA = journaled, {len(unanswered)} unanswered "
        f"(resent, stored once); exit 0 in {stopped_in:.2f}s (bound {BOUND:.0f}s); "
        f"{refused_total} late connections refused ({refused_alive} while the engine was still up); "
        f"{unfinished_at_stop} journaled untransformed at exit, re-driven at start"
    )
