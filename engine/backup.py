"""Online backups of the embedded (SQLite) databases, and their restore into an empty engine.

A backup copies each database with SQLite's backup API while the engine keeps running.
The source connection holds one read transaction for the whole copy, so the pages copied
step by step all come from one snapshot (WAL lets the engine write meanwhile; without the
held snapshot every write by the engine would restart the copy). Every message ACKed before
the backup began is therefore in it. The copy is switched out of WAL mode so that each
backup file is complete on its own, and `manifest.json` names each file, the setting it
belongs to, its size and SHA-256 and what it holds (counts), so a restore can check it.

PostgreSQL is backed up with its own tools (docs/operations.md): this module refuses it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from core.clock import now_utc
from engine.heartbeat import STALE_AFTER

MANIFEST = "manifest.json"
PAGES_PER_STEP = 1024  # pages copied per step: the engine's writers are never held for long
ENGINE_SETTING = "engine.database"

# What a manifest counts in each file: (name, SQL), where the table exists.
_COUNTS = (
    ("journal_messages", "SELECT count(*) FROM journal_messages"),
    ("deliveries", "SELECT count(*) FROM journal_deliveries"),
    ("open_dead_letters", "SELECT count(*) FROM dead_letters WHERE status = 'open'"),
    ("persons", "SELECT count(*) FROM persons"),
    ("records", "SELECT count(*) FROM records"),
)


class BackupRefused(Exception):
    """What the operator is told, as it is (already in their language)."""


class NotSQLite(Exception):
    """A database the engine uses is not SQLite: its own tools back it up."""

    def __init__(self, setting: str, url: str) -> None:
        super().__init__(setting)
        self.setting, self.url = setting, url


@dataclass(frozen=True)
class Database:
    """One SQLite database the engine uses and the setting that names it."""

    setting: str
    path: Path


def sqlite_path(url: str) -> Path | None:
    """The file of a SQLite URL; None for any other database."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    if not parsed.database or parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def engine_databases(settings: Any) -> list[Database]:
    """The engine database and every record store's own, engine database first."""
    from engine.listing_commands import store_urls

    urls = [(settings.engine.database, ENGINE_SETTING)] + [
        (url, setting) for url, setting in store_urls(settings) if setting != ENGINE_SETTING
    ]
    out: list[Database] = []
    for url, setting in urls:
        path = sqlite_path(url)
        if path is None:
            raise NotSQLite(setting, url)
        out.append(Database(setting, path))
    return out


# --------------------------------------------------------------------------- backup


def backup(databases: list[Database], directory: Path, version: str) -> tuple[Path, dict[str, Any]]:
    """Copy each database into a new DIRECTORY/<UTC time>/ and write its manifest there."""
    started = now_utc()
    target = _new_folder(directory, started)
    files = []
    names: set[str] = set()
    for db in databases:
        if not db.path.exists():
            raise FileNotFoundError(str(db.path))
        name = _unique_name(db.path.name, names)
        copy = target / name
        _copy_online(db.path, copy)
        files.append(_describe(copy, db.setting))
    manifest = {
        "format": 1,
        "started_at": started.isoformat(),
        "finished_at": now_utc().isoformat(),
        "engine_version": version,
        "files": files,
    }
    (target / MANIFEST).write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", "utf-8")
    return target, manifest


def _new_folder(directory: Path, at: datetime) -> Path:
    stamp = at.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    for n in range(100):
        folder = directory / (stamp if n == 0 else f"{stamp}-{n}")
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:
            continue
    raise FileExistsError(str(directory / stamp))


def _unique_name(name: str, taken: set[str]) -> str:
    candidate, n = name, 1
    while candidate in taken:
        n += 1
        candidate = f"{n}-{name}"
    taken.add(candidate)
    return candidate


def _copy_online(source: Path, copy: Path) -> None:
    """One snapshot of `source` copied into `copy`, in steps, without blocking its writers."""
    src = sqlite3.connect(source, timeout=30, isolation_level=None)
    dst = sqlite3.connect(copy, isolation_level=None)
    try:
        src.execute("BEGIN")
        src.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the read snapshot starts here
        src.backup(dst, pages=PAGES_PER_STEP)
        src.execute("COMMIT")
        dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
    finally:
        dst.close()
        src.close()


def _describe(path: Path, setting: str) -> dict[str, Any]:
    return {
        "file": path.name,
        "setting": setting,
        "size": path.stat().st_size,
        "sha256": sha256(path),
        "counts": counts(path),
    }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def counts(path: Path) -> dict[str, int]:
    """How many messages, deliveries, open dead letters, persons and records the file holds
    (only what it has tables for)."""
    conn = sqlite3.connect(path, timeout=30)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return {
            name: int(conn.execute(sql).fetchone()[0])
            for name, sql in _COUNTS
            if sql.split(" FROM ")[1].split()[0] in tables
        }
    finally:
        conn.close()


# --------------------------------------------------------------------------- restore


def read_manifest(folder: Path) -> dict[str, Any]:
    return dict(json.loads((folder / MANIFEST).read_text("utf-8")))


def tampered(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """The files of the backup that are missing or whose size or checksum differ."""
    bad = []
    for entry in manifest["files"]:
        path = folder / entry["file"]
        if not path.is_file() or path.stat().st_size != entry["size"] or sha256(path) != entry["sha256"]:
            bad.append(entry["file"])
    return bad


def holding_data(path: Path) -> int:
    """Messages or records already in a target file (0 when it does not exist)."""
    if not path.exists():
        return 0
    found = counts(path)
    return found.get("journal_messages", 0) + found.get("records", 0) + found.get("persons", 0)


def live_processes(path: Path, now: datetime | None = None) -> list[str]:
    """HOST:PID of every engine process whose heartbeat in this engine database is fresh."""
    if not path.exists():
        return []
    now = now or now_utc()
    conn = sqlite3.connect(path, timeout=30)
    try:
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'engine_processes'").fetchone()
        if not exists:
            return []
        rows = conn.execute(
            "SELECT host, pid, heartbeat_at FROM engine_processes WHERE stopped_at IS NULL"
        ).fetchall()
    finally:
        conn.close()
    alive = []
    for host, pid, beat in rows:
        at = datetime.fromisoformat(str(beat))
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at
        if now - at <= STALE_AFTER:
            alive.append(f"{host}:{pid}")
    return alive


def put_in_place(folder: Path, entry: dict[str, Any], target: Path) -> None:
    """Copy one backup file to `target` (through a temporary file renamed over it), and remove
    the WAL and shared-memory files an older database there left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".restoring")
    shutil.copyfile(folder / entry["file"], partial)
    with partial.open("rb+") as f:
        os.fsync(f.fileno())
    for suffix in ("-wal", "-shm", "-journal"):
        target.with_name(target.name + suffix).unlink(missing_ok=True)
    partial.replace(target)
