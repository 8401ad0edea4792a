"""The transform feed: direct hand-off, a bound on memory, reading back from the journal."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert

from core.database import make_engine
from engine import journal
from engine.transform_feed import TransformFeed
from support import wait_until


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Any]:
    engine = make_engine(f"sqlite:///{tmp_path}/journal.db")
    journal.ensure_schema(engine)
    yield engine
    engine.dispose()


def journaled(db: Any, n: int, status: str = journal.RECEIVED) -> list[journal.Accepted]:
    now = journal.now_utc()
    out = []
    with db.begin() as conn:
        for _ in range(n):
            row = conn.execute(
                insert(journal.messages).returning(journal.messages.c.id),
                {
                    "channel": "hospital",
                    "status": status,
                    "raw": b"MSH|^~\\&|HIS",
                    "received_at": now,
                    "updated_at": now,
                },
            ).scalar_one()
            out.append(journal.Accepted(row, "hospital", b"MSH|^~\\&|HIS", "utf-8"))
    return out


class Stage:
    """Stands in for the transform worker: records what it was given, saves on demand."""

    def __init__(self) -> None:
        self.got: list[int] = []
        self.lock = threading.Lock()

    def submit(self, items: list[journal.Accepted]) -> None:
        with self.lock:
            self.got += [i.journal_id for i in items]


def finish(db: Any, feed: TransformFeed, ids: list[int]) -> None:
    """What the transform worker does after a batch: save the outcome, then tell the feed."""
    with db.begin() as conn:
        conn.execute(
            journal.messages.update()
            .where(journal.messages.c.id.in_(ids))
            .values(status=journal.ROUTED, updated_at=journal.now_utc())
        )
    feed.saved(ids)


def test_offers_below_the_mark_are_handed_over_without_reading_back(db: Any) -> None:
    stage = Stage()
    feed = TransformFeed(db, stage.submit, high_water=100, interval=0.05)
    feed.start()
    try:
        items = journaled(db, 20)
        feed.offer(items)
        assert stage.got == [i.journal_id for i in items]
        finish(db, feed, stage.got)
        assert feed.in_flight == 0 and feed.read_back == 0
    finally:
        feed.stop()


def test_past_the_mark_offers_wait_in_the_journal_and_each_is_handed_over_once(db: Any) -> None:
    """1,000 messages offered 50 at a time against a mark of 120: never more than 120 in hand,
    every message handed over exactly once, most of them read back from the journal."""
    stage = Stage()
    feed = TransformFeed(db, stage.submit, high_water=120, page=40, interval=0.02)
    feed.start()
    peak = 0
    try:
        for _ in range(20):
            feed.offer(journaled(db, 50))
            peak = max(peak, feed.in_flight)
        done: list[int] = []

        def drain() -> bool:
            nonlocal peak
            with stage.lock:
                todo = [i for i in stage.got if i not in set(done)]
            peak = max(peak, feed.in_flight)
            if todo:
                finish(db, feed, todo)
                done.extend(todo)
            return len(done) == 1000

        wait_until(drain, timeout=30)
        assert sorted(stage.got) == sorted(set(stage.got)) and len(stage.got) == 1000
        assert peak <= 120
        assert feed.read_back > 500
    finally:
        feed.stop()


def test_without_a_writer_new_messages_are_found_in_the_journal(db: Any) -> None:
    """A `--role transform` process: nobody offers, the feed reads what another process journaled."""
    stage = Stage()
    feed = TransformFeed(db, stage.submit, interval=0.05)
    feed.start()
    try:
        items = journaled(db, 7)
        wait_until(lambda: stage.got == [i.journal_id for i in items], timeout=5)
    finally:
        feed.stop()


def test_a_message_no_one_handed_over_is_found_by_the_sweep(db: Any) -> None:
    """An id below the cursor that was never offered (another ingest process committed late)."""
    stage = Stage()
    feed = TransformFeed(db, stage.submit, interval=0.05, rescan=0.2)
    straggler = journaled(db, 1)
    later = journaled(db, 3)
    feed.offer(later)  # the cursor moves past the straggler
    feed.start()
    try:
        wait_until(lambda: straggler[0].journal_id in stage.got, timeout=5)
        assert stage.got.count(straggler[0].journal_id) == 1
    finally:
        feed.stop()


def test_at_start_pending_deliveries_are_redriven_when_asked(db: Any) -> None:
    """The in-process bus lost its queues with the old process: routed messages whose deliveries
    are still pending go through again; delivered ones do not."""
    pending, delivered = journaled(db, 1, journal.ROUTED), journaled(db, 1, journal.ROUTED)
    journal.record_routed(
        db,
        [
            (pending[0].journal_id, journal.ROUTED, [("record_store", "r1")]),
            (delivered[0].journal_id, journal.ROUTED, [("record_store", "r2")]),
        ],
    )
    journal.mark_delivered(db, [(delivered[0].journal_id, "record_store", "r2")])
    stage = Stage()
    feed = TransformFeed(db, stage.submit, interval=0.05, redrive_pending=True)
    feed.start()
    try:
        wait_until(lambda: stage.got == [pending[0].journal_id], timeout=5)
    finally:
        feed.stop()


def test_shards_split_the_journal_between_transform_processes(db: Any) -> None:
    """Two feeds with shards 0/2 and 1/2 (and nobody offering): each message goes to exactly one."""
    stages = [Stage(), Stage()]
    feeds = [TransformFeed(db, s.submit, interval=0.05, shard=(i, 2)) for i, s in enumerate(stages)]
    for f in feeds:
        f.start()
    try:
        items = journaled(db, 30)
        wait_until(lambda: len(stages[0].got) + len(stages[1].got) == 30, timeout=5)
        assert sorted(stages[0].got + stages[1].got) == [i.journal_id for i in items]
        assert all(j % 2 == 0 for j in stages[0].got) and all(j % 2 == 1 for j in stages[1].got)
    finally:
        for f in feeds:
            f.stop()


def test_a_message_saved_while_the_sweep_reads_is_not_handed_over_again(
    db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweep's query returns a row as `received`; before the feed looks at it, the
    transform saves it. It must not be transformed a second time."""
    stage = Stage()
    feed = TransformFeed(db, stage.submit, interval=0.05, rescan=0.1)
    items = journaled(db, 5)
    feed.offer(items)
    real = journal.unfinished

    def stale_read(*args: Any, **kwargs: Any) -> list[journal.Accepted]:
        rows = real(*args, **kwargs)
        if rows:
            finish(db, feed, [r.journal_id for r in rows])  # saved while the query "ran"
        return rows

    monkeypatch.setattr(journal, "unfinished", stale_read)
    feed.start()
    try:
        threading.Event().wait(0.5)  # several sweeps and catch-ups
        assert sorted(stage.got) == [i.journal_id for i in items]
    finally:
        feed.stop()
