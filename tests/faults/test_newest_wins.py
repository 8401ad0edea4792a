"""An A08 update and its older A04 registration delivered in reverse order.

The A04 arrives first and is acknowledged, but the store refuses it for a while (a trigger that
fails while a hold row names it: a transient error, so it waits in a retry tier). Meanwhile the
A08 arrives and is stored. When the hold is lifted the A04's retry lands on a newer person.
The guarantee: never older over newer — the store keeps the A08 state.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from channels.record_store import store as record_store
from engine_process import EngineProcess, send_stream, wait_for
from fault_setup import EMBEDDED, RABBITMQ_PG, Setup, adt, engine_setup, execute, retry_yaml
from support import REPORT, scalar

pytestmark = [pytest.mark.services, pytest.mark.slow]


def hold_deliveries(setup: Setup) -> None:
    """While `fault_hold` names a control id, storing that message's Person fails (transiently)."""
    record_store.ensure_schema(setup.store)
    if setup.kind == EMBEDDED:  # SQLite: RAISE(ABORT) is a constraint error, retried by the store
        execute(
            setup.store,
            "CREATE TABLE fault_hold (control_id TEXT PRIMARY KEY)",
            *(
                f"CREATE TRIGGER fault_hold_{op.lower()} BEFORE {op} ON persons FOR EACH ROW "
                "WHEN EXISTS (SELECT 1 FROM fault_hold WHERE control_id = NEW.source_control_id) "
                "BEGIN SELECT RAISE(ABORT, 'fault test: held'); END"
                for op in ("INSERT", "UPDATE")
            ),
        )
        return
    execute(
        setup.store,
        "CREATE TABLE fault_hold (control_id TEXT PRIMARY KEY)",
        "CREATE FUNCTION fault_hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF EXISTS (SELECT 1 FROM fault_hold WHERE control_id = NEW.source_control_id) THEN "
        "RAISE EXCEPTION 'fault test: held' USING ERRCODE = '40001'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER fault_hold BEFORE INSERT OR UPDATE ON persons FOR EACH ROW EXECUTE FUNCTION fault_hold()",
    )


@pytest.mark.parametrize("kind", [EMBEDDED, RABBITMQ_PG])
def test_older_a04_retried_after_its_a08_update_does_not_overwrite_it(kind: str, tmp_path: Path) -> None:
    """A04 (08:32, 王小红) held in retry; A08 (next day, 王晓红) stored; A04 lands: still 王晓红, from the A08."""
    tag = uuid.uuid4().hex[:6].upper()
    his_id = f"N{tag}"
    a04_cid, a08_cid = f"N{tag}-A04", f"N{tag}-A08"
    a04 = adt(a04_cid, his_id, event="A04", when="20240321083200", name="王小红")
    a08 = adt(a08_cid, his_id, event="A08", when="20240322090000", name="王晓红")
    retry = retry_yaml(["300ms"], 100)  # RabbitMQ rounds the tier up to 1 s

    with engine_setup(kind, tmp_path, retry=retry) as setup:
        hold_deliveries(setup)
        execute(setup.store, f"INSERT INTO fault_hold VALUES ('{a04_cid}')")
        with EngineProcess(setup.routes) as engine:
            assert send_stream(engine.port(), [a04], [a04_cid], connections=1).codes == ["AA"]
            a04_jid = wait_for(
                lambda: scalar(
                    setup.journal, "select id from journal_messages where control_id = :c", c=a04_cid
                ),
                10,
                "the A04 journaled",
            )
            wait_for(
                lambda: (
                    scalar(
                        setup.journal,
                        "select count(*) from delivery_attempts where journal_id = :j and outcome = 'retry'",
                        j=a04_jid,
                    )
                    >= 2
                ),
                20,
                "the A04 failing and retrying",
                engine,
            )
            assert (
                scalar(setup.store, "select count(*) from persons where source_control_id is not null") == 0
            )

            assert send_stream(engine.port(), [a08], [a08_cid], connections=1).codes == ["AA"]
            wait_for(
                lambda: scalar(setup.store, "select source_control_id from persons") == a08_cid,
                20,
                "the A08 stored while the A04 waits",
                engine,
            )
            a04_status = scalar(
                setup.journal, "select status from journal_deliveries where journal_id = :j", j=a04_jid
            )
            assert a04_status == "retrying", a04_status

            execute(setup.store, "DELETE FROM fault_hold")
            wait_for(
                lambda: (
                    scalar(
                        setup.journal,
                        "select status from journal_deliveries where journal_id = :j",
                        j=a04_jid,
                    )
                    == "delivered"
                ),
                20,
                "the A04 delivered after the hold",
                engine,
            )
            a04_attempts = scalar(
                setup.journal, "select attempts from journal_deliveries where journal_id = :j", j=a04_jid
            )
            a08_jid = scalar(
                setup.journal, "select id from journal_messages where control_id = :c", c=a08_cid
            )
            with setup.store.connect() as conn:
                person = conn.execute(select(record_store.persons)).all()
            assert len(person) == 1, person
            assert person[0].name == "王晓红"
            assert (person[0].source_control_id, person[0].journal_id) == (a08_cid, a08_jid)
            assert person[0].event_time == datetime(2024, 3, 22, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai
            assert person[0].payload["person"]["name"] == "王晓红"
            assert scalar(setup.store, "select count(*) from person_identifiers") == 1
            assert scalar(setup.journal, "select count(*) from dead_letters") == 0
            assert engine.stop() == 0

    REPORT.append(
        f"faults newest wins [{kind}]: A04 held for {a04_attempts - 1} failed attempts while its A08 was "
        f"stored; A04 then delivered as a no-op: 1 person, name/journal id/event time of the A08"
    )
