"""`mch-engine backup` while the engine receives messages over MLLP, and `mch-engine restore`
into an empty engine: every message ACKed before the backup began is there, the manifest's
counts are what the restored files hold; a changed file, an engine that runs or holds
messages, and a PostgreSQL database are refused. The CLI runs as a separate process, as the
information department runs it."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

from test_operator_actions import audit_log, mch

from engine.backup import counts
from support import RunningEngine, adt, msa, write_routes

PG_URL = "postgresql+psycopg://mch:secret@db.example:5432/mch"


class Sender(threading.Thread):
    """Sends one registration after another until stopped; remembers each one ACKed (AA)."""

    def __init__(self, engine: RunningEngine) -> None:
        super().__init__(daemon=True)
        self.engine, self.acked, self.stop = engine, list[str](), threading.Event()
        self.lock = threading.Lock()

    def run(self) -> None:
        n = 0
        while not self.stop.is_set():
            batch = [f"BK-{n + i}" for i in range(5)]
            acks = self.engine.send([adt(c, f"00109{n + i:05d}") for i, c in enumerate(batch)])
            with self.lock:
                self.acked += [c for c, a in zip(batch, acks, strict=True) if msa(a)[0] == "AA"]
            n += len(batch)

    def acked_so_far(self) -> set[str]:
        with self.lock:
            return set(self.acked)


def routes(folder: Path) -> Path:
    """Journal in engine.db, the record store in a file of its own (store.db)."""
    folder.mkdir()
    config = write_routes(folder, database=f"sqlite:///{folder / 'engine.db'}")
    text = config.read_text("utf-8")
    own = f"record_store: {{type: record_store, database: 'sqlite:///{folder / 'store.db'}'}}"
    config.write_text(text.replace("record_store: {type: record_store}", own), "utf-8")
    return config


def control_ids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    try:
        return {r[0] for r in conn.execute("SELECT control_id FROM journal_messages")}
    finally:
        conn.close()


def test_a_backup_under_load_restores_every_acked_message(tmp_path: Path) -> None:
    config = routes(tmp_path / "live")
    backups = tmp_path / "backups"
    with RunningEngine(config) as engine:
        sender = Sender(engine)
        sender.start()
        while len(sender.acked_so_far()) < 20:
            sender.join(0.05)
        before = sender.acked_so_far()
        done = mch(config, "backup", str(backups), "--as", "王芳")
        after = sender.acked_so_far()
        sender.stop.set()
        sender.join(30)
        assert done.returncode == 0, done.stderr
        [folder] = list(backups.iterdir())
        assert f"backup written: {folder}" in done.stdout

        running = mch(config, "restore", str(folder))
        assert running.returncode == 1
        assert "an engine is running" in running.stderr
    assert len(after) > len(before), "the engine kept receiving while the backup ran"

    manifest = json.loads((folder / "manifest.json").read_text("utf-8"))
    entry, store = manifest["files"]
    assert entry["file"] == "engine.db" and entry["setting"] == "engine.database"
    assert store["file"] == "store.db" and store["setting"] == "destinations.record_store.database"
    assert manifest["engine_version"] and manifest["started_at"].endswith("+00:00")
    assert entry["counts"]["journal_messages"] >= len(before)
    assert entry["counts"]["open_dead_letters"] == 0
    assert store["counts"]["persons"] > 0

    refused = mch(config, "restore", str(folder))
    assert refused.returncode == 1
    assert "already holds" in refused.stderr and "empty engine" in refused.stderr

    target = routes(tmp_path / "new")
    restored_db = tmp_path / "new" / "engine.db"
    restored = mch(target, "restore", str(folder), "--as", "王芳")
    assert restored.returncode == 0, restored.stderr
    assert before <= control_ids(restored_db)
    assert counts(restored_db) == entry["counts"]
    assert counts(tmp_path / "new" / "store.db") == store["counts"]
    assert [e["action"] for e in audit_log(target)][:2] == ["restore", "backup"]

    with RunningEngine(target) as engine:  # the restored engine takes up where the copy ended
        assert msa(engine.send([adt("BK-AFTER", "0010999999")])[0])[0] == "AA"
    assert "BK-AFTER" in control_ids(restored_db)


def test_a_changed_backup_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "live").mkdir()
    config = write_routes(tmp_path / "live", database=f"sqlite:///{tmp_path / 'live' / 'engine.db'}")
    with RunningEngine(config) as engine:
        engine.send([adt("BK-T1", "0010900001")])
    done = mch(config, "backup", str(tmp_path / "backups"))
    assert done.returncode == 0, done.stderr
    [folder] = list((tmp_path / "backups").iterdir())
    with (folder / "engine.db").open("r+b") as f:
        f.seek(200)
        f.write(b"\x7f")

    (tmp_path / "new").mkdir()
    restored_db = tmp_path / "new" / "engine.db"
    target = write_routes(tmp_path / "new", database=f"sqlite:///{restored_db}")
    refused = mch(target, "restore", str(folder))
    assert refused.returncode == 1
    assert "wrong checksum: engine.db" in refused.stderr
    assert not restored_db.exists()


def test_postgresql_is_refused_with_its_procedure(tmp_path: Path) -> None:
    config = write_routes(tmp_path, database=PG_URL)
    done = mch(config, "backup", str(tmp_path / "backups"))
    assert done.returncode == 2
    assert "engine.database is a PostgreSQL database" in done.stderr
    assert "pg_dump" in done.stderr and "secret" not in done.stderr
    assert not (tmp_path / "backups").exists()
    zh = mch(config, "--lang", "zh", "backup", str(tmp_path / "backups"))
    assert zh.returncode == 2
    assert "PostgreSQL 请用 pg_dump" in zh.stderr and "备份与恢复" in zh.stderr
