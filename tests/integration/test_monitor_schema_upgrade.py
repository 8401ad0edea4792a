"""A database written by the version before the monitors' numbers: its process table and its
journal gain the new columns at start, keep their rows, and the new numbers work."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import text

from core.database import make_engine
from engine import heartbeat, journal
from monitors import recent_window

OLD_PROCESSES = """CREATE TABLE engine_processes (
    process_id VARCHAR(200) PRIMARY KEY, host VARCHAR(200) NOT NULL, pid INTEGER NOT NULL,
    roles JSON NOT NULL, started_at DATETIME NOT NULL, heartbeat_at DATETIME NOT NULL,
    listeners JSON NOT NULL, counters JSON NOT NULL)"""


def test_an_older_process_table_and_journal_are_brought_up_to_date(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path}/engine.db")
    try:
        with db.begin() as conn:
            conn.execute(text(OLD_PROCESSES))
            conn.execute(
                text(
                    "INSERT INTO engine_processes VALUES ('h:1:0', 'h', 1, '[\"ingest\"]',"
                    " '2025-01-01 00:00:00.000000', '2025-01-01 00:00:00.000000', '[]', '{}')"
                )
            )
        journal.metadata.create_all(db)
        with db.begin() as conn:  # the journal as the previous version made it
            conn.exec_driver_sql("ALTER TABLE journal_messages DROP COLUMN journaled_at")
            conn.execute(
                text(
                    "INSERT INTO journal_messages (channel, sender, message_type, received_at, status,"
                    " encoding, raw, ack, ack_code, duplicates, peer, updated_at, control_id_reused)"
                    " VALUES ('hospital', '', '', :t, 'routed', '', x'00', '', '', 0, '', :t, 0)"
                ),
                {"t": "2025-01-01 00:00:00.000000"},
            )

        journal.ensure_schema(db)
        [old] = heartbeat.read_all(db)
        assert (old.process, old.snapshot, old.stopped_at) == ("h:1", None, None)
        beat = heartbeat.this_process({"deliver"})
        beat.snapshot = {"channels": {}}
        heartbeat.write(db, beat)
        assert [b.snapshot for b in heartbeat.read_all(db)] == [None, {"channels": {}}]
        heartbeat.mark_stopped(db, beat)
        assert [b.process for b in heartbeat.read_all(db)] == ["h:1"]

        with db.connect() as conn:
            recent = recent_window.read(conn, datetime.now(UTC))
        # The old row has no commit time: no ACK latency from it, and it is not recent.
        assert (recent.ack, recent.received_15m) == ({}, {})
    finally:
        db.dispose()
