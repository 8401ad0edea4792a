"""A poison message: one record the store always refuses with a transient error class.

A trigger on the test schema's `records` table raises SQLSTATE 40001 (serialization_failure)
for one record id, every time. The guarantee: it is retried per tier until `max_attempts`, then
waits in dead letters, visible and explained; the messages behind it flow meanwhile.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from itertools import pairwise
from pathlib import Path

import pytest

from channels.record_store import store as record_store
from engine_process import EngineProcess, broker_queues, mch, mch_json, send_stream, wait_for
from fault_setup import RABBITMQ_PG, engine_setup, execute, lab_record_id, oru, retry_yaml, rows
from support import REPORT, scalar

pytestmark = [pytest.mark.services, pytest.mark.slow]

TIERS = [1, 2]  # seconds; the last one repeats
MAX_ATTEMPTS = 4
MESSAGES = 40
POISON = 5  # index of the poison in the stream


def test_poison_message_is_dead_lettered_after_its_attempts_while_others_flow(tmp_path: Path) -> None:
    """SQLSTATE 40001 for one record id: 4 attempts 1 s / 2 s / 2 s apart, then a dead letter; 39 others stored."""
    tag = uuid.uuid4().hex[:6].upper()
    cids = [f"P{tag}{n:03d}" for n in range(MESSAGES)]
    fillers = [f"{tag}{n:05d}" for n in range(MESSAGES)]
    payloads = [
        oru(cid, filler, f"H{tag}{n:04d}") for n, (cid, filler) in enumerate(zip(cids, fillers, strict=True))
    ]
    poison = lab_record_id(fillers[POISON])
    retry = retry_yaml([f"{t}s" for t in TIERS], MAX_ATTEMPTS)

    with engine_setup(RABBITMQ_PG, tmp_path, retry=retry) as setup:
        record_store.ensure_schema(setup.store)  # the table the trigger goes on
        execute(
            setup.store,
            "CREATE FUNCTION fault_poison() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RAISE EXCEPTION 'could not serialize access (fault test poison %)', NEW.record_id "
            "USING ERRCODE = '40001'; END $$",
            "CREATE TRIGGER fault_poison BEFORE INSERT OR UPDATE ON records FOR EACH ROW "
            f"WHEN (NEW.record_id = '{poison}') EXECUTE FUNCTION fault_poison()",
        )
        with EngineProcess(setup.routes) as engine:
            stream = send_stream(engine.port(), payloads, cids, connections=2)
            assert stream.codes == ["AA"] * MESSAGES

            wait_for(
                lambda: scalar(setup.store, "select count(*) from records") == MESSAGES - 1,
                30,
                "the messages behind the poison stored",
                engine,
            )
            wait_for(
                lambda: scalar(setup.journal, "select count(*) from dead_letters"),
                30,
                "the poison in dead letters",
                engine,
            )
            listed = mch_json(setup.routes, "deadletter", "list")
            assert len(listed) == 1
            dead = listed[0]
            assert (dead["stage"], dead["destination"], dead["record_id"], dead["attempts"]) == (
                "deliver",
                "record_store",
                poison,
                MAX_ATTEMPTS,
            )
            assert dead["channel"] == "hospital" and dead["route"] == "lab-results"
            assert "fault test poison" in dead["reason"] and dead["status"] == "open"

            # Nothing else failed, and the poison never reached the store.
            stored = {r[0] for r in rows(setup.store, "select record_id from records")}
            assert stored == {lab_record_id(f) for f in fillers} - {poison}
            delivery = rows(
                setup.journal,
                "select status, attempts, last_error from journal_deliveries where record_id = :r",
                r=poison,
            )
            assert [(d.status, d.attempts) for d in delivery] == [("dead", MAX_ATTEMPTS)]
            assert "40001" in delivery[0].last_error or "serialize" in delivery[0].last_error
            others = scalar(
                setup.journal,
                "select count(*) from journal_deliveries where status = 'delivered' and attempts = 1",
            )
            assert others == MESSAGES - 1
            # The others flowed while the poison waited in its tiers.
            last_other = scalar(
                setup.journal,
                "select max(updated_at) from journal_deliveries where status = 'delivered'",
            )

            # `deadletter show`: every attempt, spaced by the tiers, the last one the dead letter.
            shown = mch_json(setup.routes, "deadletter", "show", str(dead["id"]))[0]
            tries = shown["attempt_log"]
            assert [t["attempt"] for t in tries] == list(range(1, MAX_ATTEMPTS + 1))
            assert all("fault test poison" in t["error"] for t in tries)
            times = [datetime.fromisoformat(t["at"]) for t in tries]
            gaps = [(b - a).total_seconds() for a, b in pairwise(times)]
            expected = [TIERS[min(k, len(TIERS) - 1)] for k in range(len(gaps))]
            assert all(g >= 0.9 * e for g, e in zip(gaps, expected, strict=True)), (gaps, expected)
            assert last_other < times[-1], "the messages behind the poison waited for it"
            assert shown["payload"]["record_id"] == poison and "attempt" not in shown["payload"]
            assert shown["message"]["control_id"] == cids[POISON]
            text = mch(setup.routes, "deadletter", "show", str(dead["id"])).stdout
            assert "deliver (the destination refused it or retries ran out)" in text
            queues = broker_queues(setup.prefix)
            assert {f"{setup.prefix}.record_store.retry.{t}s" for t in TIERS} <= set(queues), sorted(queues)
            assert engine.stop() == 0

    REPORT.append(
        f"faults poison (trigger SQLSTATE 40001 on one record id): {MESSAGES} ORU^R01 AA, "
        f"{MESSAGES - 1} stored, the last {(times[-1] - last_other).total_seconds():.1f}s before the poison "
        f"was dead-lettered after {dead['attempts']} attempts (gaps {[round(g, 1) for g in gaps]} s, "
        f"tiers {TIERS} s)"
    )

    # docs/oncall.md: `deadletter show` lists each attempt's outcome: retry, …, dead_letter.
    outcomes = [t["outcome"] for t in tries]
    assert outcomes == ["retry"] * (MAX_ATTEMPTS - 1) + ["dead_letter"], outcomes
