"""Alert episodes in the journal database, SQLite and PostgreSQL: an episode opens once and
journals its notice in the same transaction; a restarted engine (a new `alerts` source over
the same database) does not send it again; it repeats at `repeat_every`, and resolves."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.settings import load_settings
from engine import journal
from monitors.alerts.source import AlertsConfig, AlertSource
from monitors.alerts.store import open_alerts, recent_alerts
from support import engine_database, scalar, write_routes

EXTRA = """
alerts:
  silent_after: 15m
  repeat_every: 1h
"""


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    with engine_database(request.param, tmp_path) as engine:
        yield engine


def source(tmp_path: Path, db: Engine, clock: list[datetime]) -> AlertSource:
    routes = write_routes(tmp_path, database=db.url.render_as_string(hide_password=False), extra=EXTRA)
    settings = load_settings(routes)
    return AlertSource(
        AlertsConfig("alerts", 1.0, settings), journal.JournalWriter(db), db, clock=lambda: clock[0]
    )


def notices(db: Engine) -> list[str]:
    with db.connect() as conn:
        rows = conn.exec_driver_sql(
            "select control_id from journal_messages where message_type = 'EngineAlert' order by id"
        ).all()
    return [r.control_id.split(":")[4] for r in rows]  # alert:rule:subject:opened:KIND:at


def test_an_episode_survives_a_restart_repeats_and_resolves(tmp_path: Path, db: Engine) -> None:
    journal.ensure_schema(db)
    t0 = datetime.now(UTC).replace(microsecond=0)
    old = journal.Entry(
        "hospital",
        b"MSH|^~\\&|HIS|1\r",
        journal.RECEIVED,
        "",
        "",
        "HIS",
        "c1",
        "ADT^A04",
        received_at=t0 - timedelta(minutes=20),
    )
    journal.JournalWriter(db).commit_with([old], lambda conn: None)
    clock = [t0]

    first = source(tmp_path, db, clock)
    first.look_once()
    [alert] = open_alerts(db)
    assert (alert.rule, alert.subject, alert.state) == ("feed_silent", "hospital", "firing")
    assert "20m" in alert.summary_en and notices(db) == ["open"]

    clock[0] = t0 + timedelta(minutes=5)
    restarted = source(tmp_path, db, clock)  # a new process: it reads the open episode
    assert restarted.look_once() == [] and notices(db) == ["open"]

    clock[0] = t0 + timedelta(hours=1)
    [repeat] = restarted.look_once()
    assert repeat.kind == "repeat" and notices(db) == ["open", "repeat"]
    [still] = open_alerts(db)
    assert still.id == alert.id and still.last_notified_at == clock[0]

    new = journal.Entry(
        "hospital",
        b"MSH|^~\\&|HIS|2\r",
        journal.RECEIVED,
        "",
        "",
        "HIS",
        "c2",
        "ADT^A04",
        received_at=clock[0],
    )
    journal.JournalWriter(db).commit_with([new], lambda conn: None)
    clock[0] += timedelta(seconds=30)
    [resolve] = restarted.look_once()
    assert resolve.kind == "resolve" and notices(db) == ["open", "repeat", "resolve"]
    assert open_alerts(db) == []
    [past] = recent_alerts(db, 5)
    assert past.state == "resolved" and past.resolved_at == clock[0]
    assert scalar(db, "select count(*) from alerts") == 1
