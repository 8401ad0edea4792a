"""A million messages through the journal's storage path on SQLite, with a simulated clock and
the default retention periods: the file stops growing once the oldest messages fall out of
the period, and nothing unfinished is pruned (docs/operations.md, 数据保留 · Retention)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from core.settings import RetentionSettings
from deadletter import store as dead_letters
from engine import journal
from engine.journal.fast_paths import store_for
from engine.retention import prune_once, reclaim_space
from support import REPORT, engine_database

MESSAGES = 1_000_000
PER_DAY = 1000  # simulated messages a day
DAYS_PER_CHUNK = 10  # the pruner runs after each chunk
ATTEMPTS = 2  # delivery attempts kept per message (a retried outage)
RAW = 1024  # bytes of each message
BYTES_PER_MESSAGE = 2600  # the file's bound per retained message: raw, row, delivery, attempts, indexes
SLACK = 32 * 2**20
START = datetime(2024, 1, 1, tzinfo=UTC)


def _entries(first: int, n: int, day: datetime) -> list[journal.Entry]:
    filler = b"OBX|1|NM|718-7^Hemoglobin||123|g/L|||||F\r" * (RAW // 41)
    return [
        journal.Entry(
            channel="lis",
            raw=(b"MSH|^~\\&|LIS|H|MCH|H|||ORU^R01|S%09d|P|2.5\r" % i + filler)[:RAW],
            status=journal.RECEIVED,
            ack=f"MSA|AA|S{i:09d}",
            ack_code="AA",
            control_id=f"S{i:09d}",
            message_type="ORU^R01",
            received_at=day + timedelta(seconds=(i - first) * 86400 * DAYS_PER_CHUNK // n),
        )
        for i in range(first, first + n)
    ]


def _file_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


@pytest.mark.slow
def test_a_million_messages_keep_the_file_bounded(tmp_path: Path) -> None:
    settings = RetentionSettings(pause=0)
    chunk = PER_DAY * DAYS_PER_CHUNK
    kept = round(settings.messages / 86400 + DAYS_PER_CHUNK) * PER_DAY
    bound = kept * BYTES_PER_MESSAGE + SLACK
    with engine_database("sqlite", tmp_path) as engine:
        # Space, not durability, is measured: commits are not flushed to the disk one by one
        # (the engine's FULL sync costs the same with or without retention).
        event.listen(engine, "connect", lambda conn, _: conn.execute("PRAGMA synchronous=OFF"))
        journal.ensure_schema(engine)
        dead_letters.ensure_schema(engine)
        store = store_for(engine)
        path = tmp_path / "engine.db"
        unfinished: list[int] = []
        sizes: list[tuple[int, int]] = []
        writing = pruning = 0.0
        pruned = 0
        for n, first in enumerate(range(0, MESSAGES, chunk)):
            day = START + timedelta(days=n * DAYS_PER_CHUNK)
            started = time.perf_counter()
            _, accepted = store.commit(_entries(first, chunk, day))
            ids = [a.journal_id for a in accepted]
            # One of each unfinished kind in the first chunks, which fall out of the period first.
            waiting, retrying, dead = ids[:3] if n < 5 else (None, None, None)
            routed = [j for j in ids if j != waiting]
            journal.set_statuses(engine, [(j, journal.ROUTED, None) for j in routed])
            journal.mark_delivered(
                engine, [(j, "store", f"r{j}") for j in routed if j not in (retrying, dead)]
            )
            with engine.begin() as conn:
                conn.execute(
                    dead_letters.attempts.insert(),
                    [
                        {"journal_id": j, "destination": "store", "record_id": f"r{j}", "attempt": k}
                        | {"at": day, "error": "timeout", "outcome": "retry"}
                        for j in ids
                        for k in range(1, ATTEMPTS + 1)
                    ],
                )
            if retrying is not None:
                journal.mark_delivery_error(
                    engine, retrying, "store", f"r{retrying}", "timeout", status="retrying"
                )
                dead_letters.add_dead_letter(
                    engine,
                    stage="deliver",
                    channel="lis",
                    route="labs",
                    destination="store",
                    record_id=f"r{dead}",
                    journal_id=dead,
                    reason="refused",
                    attempts=ATTEMPTS,
                    first_failed_at=day,
                    payload=None,
                )
                unfinished += [waiting, retrying, dead]
            writing += time.perf_counter() - started

            started = time.perf_counter()
            counts = prune_once(engine, settings, day + timedelta(days=DAYS_PER_CHUNK))
            reclaim_space(engine, settings.vacuum_pages)
            pruning += time.perf_counter() - started
            pruned += counts["messages"]
            sizes.append((n * DAYS_PER_CHUNK + DAYS_PER_CHUNK, _file_size(path)))
        store.close()

        with engine.connect() as conn:
            left = conn.execute(select(func.count()).select_from(journal.messages)).scalar()
            survivors = conn.execute(
                select(journal.messages.c.id).where(journal.messages.c.id.in_(unfinished))
            )
            alive = sorted(survivors.scalars())
            still_tried = unfinished[1::3] + unfinished[2::3]  # retrying, or in an open dead letter
            a = dead_letters.attempts
            attempts_left = conn.execute(
                select(func.count()).select_from(a).where(a.c.journal_id.in_(still_tried))
            ).scalar()

    peak = max(size for _, size in sizes)
    curve = ", ".join(f"day {d}: {s / 2**20:.0f} MiB" for d, s in sizes[:: len(sizes) // 10])
    REPORT.append(
        f"retention soak: {MESSAGES:,} messages of {RAW} B ({PER_DAY}/simulated day, {ATTEMPTS} attempts each), "
        f"{settings.messages / 86400:g}-day retention: peak file {peak / 2**20:.0f} MiB "
        f"(bound {bound / 2**20:.0f} MiB), {left:,} rows kept; written {MESSAGES / writing:,.0f} msg/s, "
        f"pruned {pruned / pruning:,.0f} msg/s ({pruning:.1f} s); {curve}"
    )
    assert alive == sorted(unfinished)
    assert attempts_left == ATTEMPTS * len(still_tried)
    assert left <= kept + len(unfinished)
    assert pruned >= MESSAGES - kept
    assert peak <= bound
