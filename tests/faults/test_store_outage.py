"""The record-store database refuses connections for 30 s (a TCP proxy in front of the real
PostgreSQL; the journal, the broker and the rest of PostgreSQL stay up).

The guarantee: deliveries wait in the retry tiers and then succeed; the journal shows every
attempt; nothing ends in dead letters while `max_attempts` allows.
"""

from __future__ import annotations

import time
import uuid
from itertools import pairwise
from pathlib import Path

import pytest

from engine_process import (
    EngineProcess,
    RefusingProxy,
    broker_queues,
    mch,
    mch_json,
    poll,
    send_stream,
    wait_for,
)
from fault_setup import RABBITMQ_PG, Setup, adt, delivery_statuses, engine_setup, retry_yaml, rows
from support import REPORT, refused, require_service, scalar

pytestmark = [pytest.mark.services, pytest.mark.slow]

OUTAGE = 30.0
TIERS = [1, 2, 4]  # seconds; the last one repeats
MAX_ATTEMPTS = 20  # 1 + 2 + 4 × 17 s: far more than the outage
BEFORE, DURING = 20, 100


def test_record_store_refusing_connections_for_30s_retries_then_delivers(tmp_path: Path) -> None:
    """100 messages during a 30 s store outage: all AA, retried per tier, then delivered; no dead letter."""
    require_service("127.0.0.1", 5432, "PostgreSQL")
    tag = uuid.uuid4().hex[:6].upper()
    cids = [f"S{tag}{n:04d}" for n in range(BEFORE + DURING)]
    payloads = [adt(cid, f"S{tag}{n:05d}") for n, cid in enumerate(cids)]
    retry = retry_yaml([f"{t}s" for t in TIERS], MAX_ATTEMPTS)

    with (
        RefusingProxy("127.0.0.1", 5432) as proxy,
        engine_setup(RABBITMQ_PG, tmp_path, retry=retry, store_port=proxy.port) as setup,
        EngineProcess(setup.routes) as engine,
    ):
        assert f":{proxy.port}/" in setup.routes.read_text(encoding="utf-8")
        before = send_stream(engine.port(), payloads[:BEFORE], cids[:BEFORE], connections=2)
        assert before.codes == ["AA"] * BEFORE
        wait_for(lambda: delivered(setup) == BEFORE, 30, "deliveries before the outage", engine)
        assert proxy.accepted > 0, "the record store did not go through the proxy"

        proxy.refuse()
        down_at = time.monotonic()
        try:
            assert refused(proxy.port)
            during = send_stream(engine.port(), payloads[BEFORE:], cids[BEFORE:], connections=4)
            sent_at = time.time()  # wall clock, as the journal records attempts
            # The journal is not behind the proxy: every message is acknowledged.
            assert during.codes == ["AA"] * DURING, f"{set(during.codes)} {during.errors[:3]}"
            time.sleep(max(0.0, OUTAGE - (time.monotonic() - down_at)))  # the outage itself
            assert delivered(setup) == BEFORE, "delivered while the store refused connections"
        finally:
            proxy.accept()
        up_at = time.monotonic()

        all_delivered = poll(lambda: delivered(setup) == BEFORE + DURING, 20)
        caught_up = time.monotonic() - up_at
        REPORT.append(
            f"faults record store refusing {OUTAGE:.0f}s (proxy): {BEFORE} AA before, {DURING} AA during; "
            f"{caught_up:.1f}s after the store came back: deliveries {delivery_statuses(setup)}"
        )
        assert all_delivered, f"deliveries after the outage: {delivery_statuses(setup)}\n{engine.log_tail()}"

        # Stored once each; nothing in dead letters (max_attempts was never reached).
        counts = dict(
            rows(setup.store, "select source_control_id, count(*) from persons group by source_control_id")
        )
        assert set(counts) == set(cids) and max(counts.values()) == 1
        assert mch_json(setup.routes, "deadletter", "list", "--status", "all") == []
        assert scalar(setup.journal, "select count(*) from dead_letters") == 0
        assert "nothing matches" in mch(setup.routes, "deadletter", "list").stdout

        # The journal: attempts per delivery, each failed try with its reason.
        outage_ids = {f"person:HIS:S{tag}{n:05d}" for n in range(BEFORE, BEFORE + DURING)}
        attempts = dict(rows(setup.journal, "select record_id, attempts from journal_deliveries"))
        assert all(attempts[r] == 1 for r in attempts if r not in outage_ids)
        assert all(attempts[r] >= 2 for r in outage_ids), sorted(attempts[r] for r in outage_ids)[:5]
        tries = rows(
            setup.journal,
            "select record_id, attempt, outcome, error, at from delivery_attempts order by record_id, at, id",
        )
        assert {t.record_id for t in tries} == outage_ids
        assert {t.outcome for t in tries} == {"retry"}
        assert all("record store unavailable" in t.error for t in tries), tries[0].error
        by_record = {r: [t for t in tries if t.record_id == r] for r in outage_ids}

        # What the operator sees: `messages list --json` with the attempts.
        listed = mch_json(setup.routes, "messages", "list", "--all")
        shown = {d["record_id"]: d for m in listed for d in m["deliveries"]}
        assert len(listed) == BEFORE + DURING
        assert all(shown[r]["status"] == "delivered" and shown[r]["attempts"] >= 2 for r in outage_ids)

        # Per tier: each delivery failed first at once, then once per tier wait (RabbitMQ TTL
        # queues <prefix>.<destination>.retry.<N>s), each attempt counted once.
        queues = broker_queues(setup.prefix)
        assert {f"{setup.prefix}.record_store.retry.{t}s" for t in TIERS} <= set(queues), sorted(queues)
        late = [r for r, ts in by_record.items() if ts[0].at.timestamp() > sent_at + 5]
        assert not late, f"{len(late)} deliveries had no first attempt within 5 s of their ACK"
        numbering = {r: [t.attempt for t in ts] for r, ts in by_record.items()}
        repeated = {r: n for r, n in numbering.items() if n != list(range(1, len(n) + 1))}
        assert not repeated, (
            f"{len(repeated)} deliveries with attempts out of sequence, e.g. {next(iter(repeated.items()))}"
        )
        assert all(attempts[r] == len(by_record[r]) + 1 for r in outage_ids)  # the last one succeeded
        off_tier = {}
        for r, ts in by_record.items():
            gaps = [(b.at - a.at).total_seconds() for a, b in pairwise(ts)]
            expected = [TIERS[min(k, len(TIERS) - 1)] for k in range(len(gaps))]
            if not all(g >= 0.9 * e for g, e in zip(gaps, expected, strict=True)):
                off_tier[r] = [round(g, 1) for g in gaps]
        assert not off_tier, (
            f"{len(off_tier)} deliveries retried off their tiers, e.g. {next(iter(off_tier.items()))}"
        )
        assert min(len(ts) for ts in by_record.values()) >= 8  # 30 s spans the 1, 2 and repeating 4 s tiers
        assert engine.stop() == 0

    REPORT.append(
        f"faults record store refusing {OUTAGE:.0f}s: attempts per outage delivery "
        f"{min(attempts[r] for r in outage_ids)}–{max(attempts[r] for r in outage_ids)} (tiers {TIERS} s, "
        f"max_attempts {MAX_ATTEMPTS}), {len(tries)} failed tries in delivery_attempts, 0 dead letters"
    )


def delivered(setup: Setup) -> int:
    return int(scalar(setup.journal, "select count(*) from journal_deliveries where status = 'delivered'"))
