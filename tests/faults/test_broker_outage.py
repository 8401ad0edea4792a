"""RabbitMQ stopped (`rabbitmqctl stop_app`) in the middle of a stream, then started again.

The guarantee: the journal is the durable part, so messages sent while the broker is away are
still acknowledged; the engine reconnects by itself, and every acknowledged message ends
delivered, once.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

import pytest

from engine_process import EngineProcess, LockStepStream, broker_queues, mch_json, rabbitmqctl, wait_for
from fault_setup import RABBITMQ_PG, adt, engine_setup, rows, wait_delivered
from support import REPORT, require_service, scalar, unavailable

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.exclusive]

MESSAGES = 3000
CONNECTIONS = 4
DOWN_AFTER = 500  # the sender pauses before this message until the broker is stopped
HOLD_AT = 1500  # and again before this one until the broker is back


def require_rabbitmqctl() -> None:
    require_service("127.0.0.1", 5672, "RabbitMQ")
    if shutil.which("rabbitmqctl") is None:
        unavailable("rabbitmqctl is not on PATH")


def test_broker_stop_and_start_mid_stream_loses_nothing(tmp_path: Path) -> None:
    """stop_app after 500 ACKs; the next 1,000 ACKed while it is down; start_app; 1,500 more; all delivered once."""
    require_rabbitmqctl()
    tag = uuid.uuid4().hex[:6].upper()
    cids = [f"B{tag}{n:05d}" for n in range(MESSAGES)]
    payloads = [adt(cid, f"B{tag}{n:06d}") for n, cid in enumerate(cids)]

    with engine_setup(RABBITMQ_PG, tmp_path) as setup, EngineProcess(setup.routes) as engine:
        stream = LockStepStream(
            engine.port(), payloads, cids, connections=CONNECTIONS, hold_at=(DOWN_AFTER, HOLD_AT)
        ).start()
        try:
            wait_for(lambda: stream.answered >= DOWN_AFTER, 60, "ACKs before the outage", engine)
            try:
                # The sender waits while stop_app runs (it can take seconds), so the next
                # thousand messages all arrive while the broker is away.
                stopped = rabbitmqctl("stop_app")
                assert stopped.returncode == 0, stopped.stderr
                down_at = time.monotonic()
                acks_at_stop = stream.answered
                stream.release()
                wait_for(lambda: stream.answered >= HOLD_AT, 30, "ACKs while the broker is down", engine)
                # Held in the journal, waiting for the broker: acknowledged, not transformed yet.
                waiting = scalar(
                    setup.journal, "select count(*) from journal_messages where status = 'received'"
                )
            finally:
                started = rabbitmqctl("start_app")
            up_at = time.monotonic()
            assert started.returncode == 0, started.stderr
            acked_while_down = stream.answered_between(down_at, up_at)
        finally:
            stream.release(every=True)
        stream.join(120)
        acked_after = stream.answered_between(up_at, float("inf"))
        assert stream.codes == ["AA"] * MESSAGES, f"{set(stream.codes)} {stream.errors[:3]}"
        assert acks_at_stop == DOWN_AFTER
        assert len(acked_while_down) == HOLD_AT - DOWN_AFTER, "too few ACKs while the broker was down"
        assert len(acked_after) == MESSAGES - HOLD_AT
        assert waiting > 0, "nothing was waiting for the broker: the outage did not bite"

        wait_delivered(setup, engine, MESSAGES, 90, "every delivery delivered after the broker came back")
        caught_up = time.monotonic() - up_at
        assert engine.alive() and engine.starts == 1, "the engine had to be restarted"

        counts = dict(
            rows(setup.store, "select source_control_id, count(*) from persons group by source_control_id")
        )
        assert set(counts) == set(cids) and max(counts.values()) == 1
        stored_down = {cids[i] for i in acked_while_down} & set(counts)
        assert len(stored_down) == len(acked_while_down)
        assert scalar(setup.journal, "select count(*) from journal_messages where status != 'routed'") == 0
        assert scalar(setup.journal, "select count(*) from journal_deliveries") == MESSAGES
        assert mch_json(setup.routes, "deadletter", "list") == []
        assert broker_queues(setup.prefix).get(f"{setup.prefix}.record_store") == 0
        assert engine.stop() == 0

    REPORT.append(
        f"faults broker stop_app/start_app: {MESSAGES} ADT^A04 on {CONNECTIONS} connections; broker "
        f"down {up_at - down_at:.1f}s after {acks_at_stop} AA; {len(acked_while_down)} AA while down, "
        f"{len(acked_after)} after "
        f"({waiting} journaled and waiting at start_app); all {len(counts)} delivered once, "
        f"{caught_up:.1f}s after start_app; engine never restarted"
    )
