"""Unit tests for the journal writer: group commit, duplicates, and handing outcomes back."""

from __future__ import annotations

import asyncio
import contextvars
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select

from core.database import make_engine
from core.journal import REJECTED, Entry, Outcome, Written
from engine import journal
from engine.batching import run_batches
from engine.journal.commit import CoreStore
from engine.journal.fast_paths import SqliteStore
from engine.journal.writer import JournalWriter


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path}/journal.db")
    journal.ensure_schema(eng)
    yield eng
    eng.dispose()


def entry(control_id: str | None, *, sender: str = "HIS^FY01", status: str = journal.RECEIVED) -> Entry:
    return Entry(
        channel="hospital",
        raw=f"MSH|^~\\&|HIS|FY01|||20240321083215||ADT^A04|{control_id}|P|2.5\r".encode(),
        status=status,
        ack=f"ACK for {control_id}",
        ack_code="AA" if status == journal.RECEIVED else "AR",
        sender=sender,
        control_id=control_id,
        message_type="ADT^A04",
        event_time=datetime(2024, 3, 21, 8, 32, 15, tzinfo=timezone(timedelta(hours=8))),
        encoding="utf-8",
        peer="10.0.0.7:51234",
    )


def write_batch(eng: Engine, entries: list[Entry]) -> list[Written]:
    """Submit everything before the writer starts, so it all goes into one commit."""
    writer = JournalWriter(eng)
    futures = [writer.submit(e) for e in entries]
    writer.start()
    try:
        return [f.result(timeout=30) for f in futures]
    finally:
        writer.stop()


def rows(eng: Engine) -> list[Any]:
    with eng.connect() as conn:
        return list(conn.execute(select(journal.messages).order_by(journal.messages.c.id)))


class TestBatches:
    def test_first_item_is_handed_over_at_once_and_later_ones_form_the_next_batch(self) -> None:
        """No waiting for company: a lone item is a batch; what queues meanwhile is the next one."""
        q: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        batches: list[list[int]] = []
        first_taken = threading.Event()
        release = threading.Event()

        def handle(batch: list[int]) -> None:
            batches.append(batch)
            first_taken.set()
            release.wait(10)

        worker = threading.Thread(target=run_batches, args=(q, handle, 100))
        worker.start()
        q.put(1)
        assert first_taken.wait(5)
        for n in (2, 3, 4):
            q.put(n)
        release.set()
        q.put(None)
        worker.join(10)
        assert batches == [[1], [2, 3, 4]]

    def test_max_items_splits_what_is_queued(self) -> None:
        q: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        for n in range(5):
            q.put(n)
        q.put(None)
        batches: list[list[int]] = []
        run_batches(q, batches.append, 2)
        assert batches == [[0, 1], [2, 3], [4]]

    def test_max_wait_still_gathers_late_items(self) -> None:
        """A site that sets max_wait_ms gets the old behaviour: wait that long for more."""
        q: queue.SimpleQueue[int | None] = queue.SimpleQueue()
        batches: list[list[int]] = []
        worker = threading.Thread(target=run_batches, args=(q, batches.append, 10, 1.0))
        worker.start()
        q.put(1)
        time.sleep(0.05)
        q.put(2)
        q.put(None)
        worker.join(10)
        assert batches == [[1, 2]]


class TestCommit:
    def test_ids_ascend_in_submission_order(self, engine: Engine) -> None:
        written = write_batch(engine, [entry(f"C{n}") for n in range(20)])
        assert [w.journal_id for w in written] == sorted(w.journal_id for w in written)
        assert [r.control_id for r in rows(engine)] == [f"C{n}" for n in range(20)]
        assert not any(w.duplicate for w in written)

    def test_duplicates_within_one_batch_get_the_first_ack_and_are_counted(self, engine: Engine) -> None:
        first, again, other, third = write_batch(
            engine, [entry("DUP"), entry("DUP"), entry("OTHER"), entry("DUP")]
        )
        assert first == Written(first.journal_id, False, "ACK for DUP")
        assert again == third == Written(first.journal_id, True, "ACK for DUP")
        assert not other.duplicate
        stored = rows(engine)
        assert [r.control_id for r in stored] == ["DUP", "OTHER"]
        assert stored[0].duplicates == 2

    def test_a_known_control_id_gets_the_original_ack(self, engine: Engine) -> None:
        (original,) = write_batch(engine, [entry("K1")])
        resent = entry("K1")
        resent.ack = "a different ACK"
        (again,) = write_batch(engine, [resent])
        assert again == Written(original.journal_id, True, "ACK for K1")
        assert rows(engine)[0].duplicates == 1

    def test_rejected_and_keyless_entries_are_always_kept(self, engine: Engine) -> None:
        written = write_batch(
            engine, [entry("R1", status=REJECTED), entry("R1", status=REJECTED), entry(None)]
        )
        assert len({w.journal_id for w in written}) == 3
        assert not any(w.duplicate for w in written)

    def test_times_are_stored_as_sqlalchemy_stores_them(self, engine: Engine) -> None:
        """The raw insert and SQLAlchemy must agree on SQLite's text form of a time."""
        write_batch(engine, [entry("T1")])
        with sqlite3.connect(engine.url.database or "") as raw:
            stored = raw.execute("select event_time from journal_messages").fetchone()[0]
        assert stored == "2024-03-21 00:32:15.000000"
        assert rows(engine)[0].event_time == datetime(2024, 3, 21, 0, 32, 15, tzinfo=UTC)

    @pytest.mark.parametrize(
        "value",
        [
            datetime(2024, 3, 21, 8, 32, 15, 120, tzinfo=timezone(timedelta(hours=8))),
            datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
            datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        ],
    )
    def test_sqlite_time_matches_the_column_type(self, engine: Engine, value: datetime) -> None:
        column = journal.messages.c.received_at.type.dialect_impl(engine.dialect)
        to_text = column.bind_processor(engine.dialect)
        assert to_text is not None
        assert journal.sqlite_time(value) == to_text(value)

    def test_naive_time_is_refused(self) -> None:
        with pytest.raises(ValueError, match="naive"):
            journal.sqlite_time(datetime(2024, 1, 1))

    def test_core_and_driver_statements_store_the_same_rows(self, tmp_path: Path) -> None:
        """The SQLAlchemy Core path (other databases) and the sqlite3 path agree row for row."""
        batch = [entry("A"), entry("A"), entry("B", status=REJECTED), entry(None)]
        stored = []
        for name, store_class in (("core", CoreStore), ("driver", SqliteStore)):
            eng = make_engine(f"sqlite:///{tmp_path}/{name}.db")
            journal.ensure_schema(eng)
            store = store_class(eng)
            outcomes, accepted = store.commit(batch)
            store.close()
            stored.append(
                (
                    outcomes,
                    [a.journal_id for a in accepted],
                    [tuple(r)[:7] + tuple(r)[8:16] for r in rows(eng)],
                )
            )
            eng.dispose()
        assert stored[0] == stored[1]

    def test_waits_for_another_connection_holding_the_write_lock(self, engine: Engine) -> None:
        """The writer's connection has no busy timeout of its own: it retries, never fails."""
        other = sqlite3.connect(engine.url.database or "", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        writer = JournalWriter(engine)
        writer.start()
        try:
            future = writer.submit(entry("LOCKED"))
            time.sleep(0.3)
            assert not future.done()
            other.execute("COMMIT")
            assert not future.result(timeout=10).duplicate
        finally:
            writer.stop()
            other.close()

    def test_a_failed_commit_is_an_exception_for_every_entry(self, engine: Engine) -> None:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE journal_messages")
        writer = JournalWriter(engine)
        futures = [writer.submit(entry(f"F{n}")) for n in range(3)]
        writer.start()
        try:
            for f in futures:
                with pytest.raises(Exception, match="journal_messages"):
                    f.result(timeout=10)
        finally:
            writer.stop()


class CountingLoop(asyncio.SelectorEventLoop):
    """Counts the cross-thread wake-ups the journal asks of the loop."""

    def __init__(self) -> None:
        super().__init__()
        self.wakeups = 0

    def call_soon_threadsafe(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any, context: contextvars.Context | None = None
    ) -> asyncio.Handle:
        self.wakeups += 1
        return super().call_soon_threadsafe(callback, *args, context=context)


class TestOutcomesToEventLoops:
    def test_one_wakeup_of_the_loop_per_commit_not_per_message(self, engine: Engine) -> None:
        loop = CountingLoop()
        writer = JournalWriter(engine)

        async def send_all() -> list[Outcome]:
            futures = []
            for n in range(50):
                fut: asyncio.Future[Outcome] = loop.create_future()
                writer.submit_to(entry(f"W{n}"), loop, fut.set_result)
                futures.append(fut)
            writer.start()
            return list(await asyncio.gather(*futures))

        try:
            outcomes = loop.run_until_complete(send_all())
        finally:
            writer.stop()
            loop.close()
        assert writer.commits == 1
        assert loop.wakeups == 1
        assert [o.ack for o in outcomes if isinstance(o, Written)] == [f"ACK for W{n}" for n in range(50)]

    def test_outcomes_for_a_closed_loop_do_not_stop_the_writer(self, engine: Engine) -> None:
        closed = asyncio.new_event_loop()
        closed.close()
        writer = JournalWriter(engine)
        writer.submit_to(entry("GONE"), closed, lambda _: None)
        later = writer.submit(entry("NEXT"))
        writer.start()
        try:
            assert not later.result(timeout=10).duplicate
        finally:
            writer.stop()


def test_the_writer_connection_flushes_every_commit(engine: Engine) -> None:
    """The writer keeps its own connection; it still has WAL and synchronous=FULL (2)."""
    store = SqliteStore(engine)
    try:
        store.commit([entry("SYNC")])
        conn = store._pooled.driver_connection
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        store.close()
