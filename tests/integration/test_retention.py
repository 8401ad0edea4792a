"""The retention pruner on SQLite and PostgreSQL: finished data older than its period goes,
in bounded batches; nothing unfinished goes; the audit log outlives the rest."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select
from test_operator_actions import audit_log, mch

from channels.mllp_out import forwarded
from channels.wechat import delivery_reports, ledger
from core.clock import now_utc
from core.settings import RetentionSettings
from deadletter import audit
from deadletter import store as dead_letters
from engine import journal, operator_requests, retention_totals
from engine import logging as engine_logging
from engine.journal.fast_paths import store_for
from engine.retention import KINDS, Pruner, prune_once, reclaim_space, run_pass
from monitors.alerts import store as alerts
from monitors.engine_status import EngineStatus
from monitors.metrics import families
from monitors.web import sessions
from support import ENGINE_LOG, engine_database, wait_until, write_routes

DAY = timedelta(days=1)


def _journal(engine: Engine, statuses: list[str], received_at: datetime | None = None) -> list[int]:
    """Messages through the journal's own insert, one per status wanted."""
    first = len(_ids(engine, journal.messages))
    entries = [
        journal.Entry(
            channel="lis",
            raw=b"MSH|^~\\&|LIS|H|MCH|H|||ORU^R01|C%d|P|2.5\r" % i + b"OBX|" + b"x" * 1000,
            status=journal.REJECTED if s == journal.REJECTED else journal.RECEIVED,
            ack="MSA|AA",
            ack_code="AA",
            control_id=f"C{i}",
            received_at=received_at,
        )
        for i, s in enumerate(statuses, start=first)
    ]
    outcomes, _ = store_for(engine).commit(entries)
    ids = [o.journal_id for o in outcomes]  # type: ignore[union-attr]
    journal.set_statuses(engine, [(j, s, None) for j, s in zip(ids, statuses, strict=True)])
    return ids


def _fill(engine: Engine) -> dict[str, Any]:
    """One of each thing the pruner must keep or may take, all written now."""
    for ensure in (
        journal.ensure_schema,
        dead_letters.ensure_schema,
        audit.ensure_schema,
        ledger.ensure_schema,
    ):
        ensure(engine)
    routed = _journal(engine, [journal.ROUTED] * 10)
    delivered, pending, retrying, dead = routed[:7], routed[7], routed[8], routed[9]
    received, unrouted, rejected, failed_open, failed_purged = _journal(
        engine, [journal.RECEIVED, journal.UNROUTED, journal.REJECTED, journal.FAILED, journal.FAILED]
    )
    journal.record_routed(engine, [(j, journal.ROUTED, [("store", f"r{j}")]) for j in routed])
    journal.mark_delivered(engine, [(j, "store", f"r{j}") for j in delivered])
    journal.mark_delivery_error(engine, retrying, "store", f"r{retrying}", "timeout", status=journal.RETRYING)
    journal.mark_delivery_error(engine, dead, "store", f"r{dead}", "refused", status=journal.DEAD)
    for j in (*delivered[:2], retrying, dead):
        for n in (1, 2, 3):
            dead_letters.record_attempt(
                engine,
                journal_id=j,
                destination="store",
                record_id=f"r{j}",
                attempt=n,
                error="x",
                outcome="retry",
            )
    letters = {}
    for j, stage, dest in (
        (dead, "deliver", "store"),
        (failed_open, "transform", ""),
        (failed_purged, "transform", ""),
    ):
        letters[j] = dead_letters.add_dead_letter(
            engine,
            stage=stage,
            channel="lis",
            route="r",
            destination=dest,
            record_id=f"r{j}" if dest else "",
            journal_id=j,
            reason="bad",
            attempts=1,
            first_failed_at=now_utc(),
            payload=None,
        )
    dead_letters.resolve(engine, [letters[failed_purged]], dead_letters.PURGED, "王芳", None)
    with engine.begin() as conn:
        for i, status in enumerate(("sent", "held", "queued", "failed", "outbox")):
            ledger.insert_once(conn, _notice(i, status))
    audit.write_audit(
        engine, actor=audit.current_actor("王芳"), action="purge", target="1", count=1, detail=None
    )
    return {
        "finished": [*delivered, unrouted, rejected],
        "unfinished": [pending, retrying, dead, received, failed_open],
        "purged_letter_message": failed_purged,
    }


def _notice(i: int, status: str, msgid: str | None = None) -> dict[str, Any]:
    return {
        "msgid": msgid,
        "dedup_key": f"k{i}",
        "destination": "wechat",
        "event": "lab",
        "person": "id_card:x",
        "record_id": f"r{i}",
        "record_type": "LabResult",
        "recipient": "o",
        "template_id": "T",
        "data": {},
        "status": status,
        "client_msg_id": f"k{i}",
        "created_at": now_utc(),
    }


def _ids(engine: Engine, table: Any, column: Any = None) -> list[Any]:
    with engine.connect() as conn:
        return sorted(conn.execute(select(column if column is not None else table.c.id)).scalars())


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    with engine_database(request.param, tmp_path) as engine:
        yield engine


def test_only_finished_data_older_than_its_period_goes(db: Engine) -> None:
    made = _fill(db)
    settings = RetentionSettings(batch=3, pause=0)
    assert prune_once(db, settings, now_utc() + 179 * DAY) == dict.fromkeys(KINDS, 0)

    later = now_utc() + 181 * DAY
    preview = prune_once(db, settings, later, dry_run=True)
    counts = prune_once(db, settings, later)
    assert counts == preview
    assert counts["messages"] == len(made["finished"])
    assert counts["deliveries"] == 7
    assert counts["dead_letters"] == 1  # the purged one; the open ones stay
    assert counts["notices"] == counts["audit"] == 0
    left = _ids(db, journal.messages)
    assert set(made["unfinished"]) <= set(left)
    assert not set(made["finished"]) & set(left)
    # The message of the purged dead letter goes once its dead letter is gone: the next pass.
    assert made["purged_letter_message"] in left
    assert prune_once(db, settings, later)["messages"] == 1
    # Attempts of a delivery still retrying or of an open dead letter stay.
    assert len(_ids(db, dead_letters.attempts)) == 6
    assert [s for s in _ids(db, dead_letters.dead_letters, dead_letters.dead_letters.c.status)] == [
        "open",
        "open",
    ]

    # A year on: final notices go, held/queued/failed ones stay; the audit log outlives them all.
    counts = prune_once(db, settings, now_utc() + 366 * DAY)
    assert counts["notices"] == 2
    assert _ids(db, ledger.notices, ledger.notices.c.status) == ["failed", "held", "queued"]
    assert len(_ids(db, audit.audit_log)) == 1
    assert prune_once(db, settings, now_utc() + 1096 * DAY)["audit"] == 1
    assert set(made["unfinished"]) <= set(_ids(db, journal.messages))


def test_each_delete_is_a_bounded_batch_of_its_own(db: Engine) -> None:
    _fill(db)
    statements: list[tuple[str, int]] = []

    def seen(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("DELETE FROM journal_messages"):
            statements.append((statement, cursor.rowcount))

    event.listen(db, "after_cursor_execute", seen)
    try:
        counts = prune_once(db, RetentionSettings(batch=4, pause=0), now_utc() + 181 * DAY)
    finally:
        event.remove(db, "after_cursor_execute", seen)
    assert counts["messages"] == 9
    assert [n for _, n in statements] == [4, 4, 1]


def test_audit_period_never_shorter_than_the_others() -> None:
    with pytest.raises(ValueError, match=r"retention\.audit"):
        RetentionSettings(notices="400d", audit="365d")
    with pytest.raises(ValueError):
        RetentionSettings(messages=180)  # seconds: refused, not a journal emptied


def test_sqlite_gives_freed_pages_back_beyond_a_reserve(tmp_path: Path) -> None:
    with engine_database("sqlite", tmp_path) as engine:
        _fill(engine)
        extra = _journal(engine, [journal.ROUTED] * 300)
        journal.record_routed(engine, [(j, journal.ROUTED, [("store", f"r{j}")]) for j in extra])
        journal.mark_delivered(engine, [(j, "store", f"r{j}") for j in extra])

        def pages() -> tuple[int, int]:
            with engine.connect() as conn:
                return (
                    conn.exec_driver_sql("PRAGMA freelist_count").scalar(),
                    conn.exec_driver_sql("PRAGMA page_count").scalar(),
                )

        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() == 2
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        size = (tmp_path / "engine.db").stat().st_size
        prune_once(engine, RetentionSettings(pause=0), now_utc() + 181 * DAY)
        free, total = pages()
        assert free > total // 2
        assert reclaim_space(engine, 1) == 1
        given = reclaim_space(engine, 10_000)
        free_after, total_after = pages()
        assert given == free - 1 - free_after
        assert free_after == int(total_after * 0.1) or free_after == int(total * 0.1)
        with engine.connect() as conn:
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            assert conn.execute(select(func.count()).select_from(journal.messages)).scalar() == 6
        assert (tmp_path / "engine.db").stat().st_size < size / 2


def test_the_command_previews_then_prunes_and_is_audited(tmp_path: Path) -> None:
    config = write_routes(tmp_path, database=f"sqlite:///{tmp_path / 'engine.db'}")
    with engine_database("sqlite", tmp_path) as engine:
        for ensure in (journal.ensure_schema, dead_letters.ensure_schema, audit.ensure_schema):
            ensure(engine)
        old = _journal(engine, [journal.ROUTED] * 5 + [journal.RECEIVED], now_utc() - 200 * DAY)
        _journal(engine, [journal.ROUTED] * 2)  # new: inside the period
        journal.mark_delivered(engine, [(j, "store", f"r{j}") for j in old[:5]])

    preview = mch(config, "retention", "--dry-run", "--json")
    assert preview.returncode == 0, preview.stderr
    would = json.loads(preview.stdout)
    assert would["dry_run"] is True
    assert (would["counts"]["messages"], would["counts"]["deliveries"]) == (5, 5)
    zh = mch(config, "--lang", "zh", "retention", "--dry-run")
    assert "数据保留（试运行，未删除任何数据）将删除：" in zh.stdout
    assert "5  已完成的消息 messages" in zh.stdout

    done = mch(config, "retention", "--as", "王芳")
    assert done.returncode == 0, done.stderr
    assert "retention pass done, deleted:" in done.stdout
    assert "5  finished messages" in done.stdout
    with engine_database("sqlite", tmp_path) as engine:
        assert len(_ids(engine, journal.messages)) == 3  # the one still received, the two new
        assert old[5] in _ids(engine, journal.messages)
    (entry,) = [e for e in audit_log(config) if e["action"] == "retention"]
    assert (entry["actor"], entry["outcome"], entry["count"]) == ("王芳", "done", 10)

    # `status` says when retention last ran and what it deleted.
    shown = json.loads(mch(config, "status", "--json").stdout)["retention"]
    assert shown["last"]["messages"] == 5 and shown["total"]["messages"] == 5 and shown["last_at"]
    assert "retention: last pass" in mch(config, "status").stdout


def test_the_pruner_thread_runs_passes_and_logs_counts_only(tmp_path: Path) -> None:
    with engine_database("sqlite", tmp_path) as engine:
        for ensure in (journal.ensure_schema, dead_letters.ensure_schema, audit.ensure_schema):
            ensure(engine)
        old = _journal(engine, [journal.UNROUTED] * 3, now_utc() - 200 * DAY)
        engine_logging.configure("info", stream=ENGINE_LOG)  # the event is at info level
        before = ENGINE_LOG.mark()
        pruner = Pruner(engine, RetentionSettings(every=0.2, pause=0), first_after=0.05)
        pruner.start()
        try:
            wait_until(lambda: pruner.passes >= 2, timeout=10)
        finally:
            pruner.stop()
        assert not set(old) & set(_ids(engine, journal.messages))
    first, *_ = ENGINE_LOG.events(since=before, name="retention_pruned")
    assert first["messages"] == 3 and first["audit"] == 0
    assert "C0" not in json.dumps(first) and "MSH" not in json.dumps(first)


def _fill_the_rest(engine: Engine) -> dict[str, Any]:
    """Forwarding marks, delivery reports, operator requests, alerts and sessions: one
    finished and one still needed of each, all written now."""
    for ensure in (
        journal.ensure_schema,
        dead_letters.ensure_schema,
        forwarded.ensure_schema,
        ledger.ensure_schema,
        delivery_reports.ensure_schema,
        alerts.ensure_schema,
        sessions.ensure_schema,
    ):
        ensure(engine)
    done, pending = _journal(engine, [journal.ROUTED] * 2)
    journal.record_routed(engine, [(j, journal.ROUTED, [("out", f"r{j}")]) for j in (done, pending)])
    journal.mark_delivered(engine, [(done, "out", f"r{done}")])
    for j in (done, pending):
        assert forwarded.claim(engine, "out", j, lease=60) == forwarded.MINE
        forwarded.mark_sent(engine, "out", j, "AA")
    with engine.begin() as conn:
        ledger.insert_once(conn, _notice(0, "sent", msgid="m-sent"))
        ledger.insert_once(conn, _notice(1, "failed", msgid="m-failed"))
        for msgid in ("m-sent", "m-failed", "m-no-notice"):
            delivery_reports.record_delivery_report(conn, msgid, "success", now_utc())
        conn.execute(
            alerts.alerts.insert(),
            [
                {
                    "rule": "r",
                    "subject": s,
                    "severity": "warning",
                    "state": state,
                    "opened_at": now_utc(),
                    "last_notified_at": now_utc(),
                    "resolved_at": now_utc() if state == alerts.RESOLVED else None,
                }
                for s, state in (("a", alerts.RESOLVED), ("b", alerts.FIRING))
            ],
        )
    asked = [
        operator_requests.submit(engine, kind, {}, actor="王芳", os_user="wf", scope=scope)
        for kind, scope in (("replay", operator_requests.ONE), ("reload", operator_requests.ALL))
    ]
    operator_requests.RequestPoller(engine, {"reload": lambda p, r: {"ok": True}}, name="p1").poll_once()
    operator_requests.finish(engine, asked[1], operator_requests.DONE, {})
    _, live = sessions.open_session(engine, "wangfang", "127.0.0.1")
    _, idle = sessions.open_session(engine, "lina", "127.0.0.1")
    with engine.begin() as conn:
        stale = sessions.web_sessions.update().where(sessions.web_sessions.c.id_hash == idle.id_hash)
        conn.execute(stale.values(last_seen_at=now_utc() - 2 * DAY))
    return {"pending": pending, "queued_request": asked[0], "live_session": live.id_hash}


def test_the_other_growing_tables_lose_only_what_is_finished(db: Engine) -> None:
    made = _fill_the_rest(db)
    settings = RetentionSettings(batch=1, pause=0)
    # A session idle for a day has long expired; nothing else is old enough.
    assert prune_once(db, settings) == {**dict.fromkeys(KINDS, 0), "sessions": 1}
    assert _ids(db, sessions.web_sessions, sessions.web_sessions.c.id_hash) == [made["live_session"]]

    later = prune_once(db, settings, now_utc() + 181 * DAY)
    assert (later["messages"], later["forwarded"], later["operator_requests"], later["alerts"]) == (
        1,
        1,
        1,
        1,
    )
    assert later["delivery_reports"] == 0  # its notices' period is a year
    # The pending message's forwarding mark stays with it; the queued request and the
    # firing alert stay.
    assert _ids(db, forwarded.forwarded, forwarded.forwarded.c.journal_id) == [made["pending"]]
    assert _ids(db, operator_requests.requests) == [made["queued_request"]]
    assert _ids(db, operator_requests.results, operator_requests.results.c.request_id) == []
    assert _ids(db, alerts.alerts, alerts.alerts.c.state) == [alerts.FIRING]

    # A year on: the sent notice goes with its report, and the report no notice claims;
    # the failed notice keeps its report.
    year = prune_once(db, settings, now_utc() + 366 * DAY)
    assert (year["notices"], year["delivery_reports"]) == (1, 2)
    reports = delivery_reports.wechat_delivery_reports
    assert _ids(db, reports, reports.c.msgid) == ["m-failed"]


def test_the_metrics_count_what_every_pass_pruned(db: Engine) -> None:
    _fill_the_rest(db)
    assert retention_totals.read(db).last_at is None
    settings = RetentionSettings(pause=0)
    run_pass(db, settings)
    with db.begin() as conn:
        conn.execute(sessions.web_sessions.update().values(last_seen_at=now_utc() - 3 * DAY))
    run_pass(db, settings)
    kept = retention_totals.read(db)
    assert kept.last_at is not None and kept.last["sessions"] == 1
    status = EngineStatus(now_utc(), "", "", retention=kept)
    (family,) = [f for f in families(status) if f.name == "mch_retention_pruned"]
    pruned = {s.labels["kind"]: s.value for s in family.samples if s.name.endswith("_total")}
    assert set(pruned) == set(KINDS)
    assert (pruned["sessions"], pruned["messages"]) == (2, 0)
