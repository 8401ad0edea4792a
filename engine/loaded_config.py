"""What each running engine process has loaded, kept in its database.

`mch-engine check --diff` compares the files on disk with what the running engine
uses, and `mch-engine reload` needs to know which processes should answer. So every
engine process writes one row here at start and after each reload: a snapshot of its
settings (secrets as fingerprints, never the URL itself) and the content hash of every
mapping file, include and code table it compiled; and it marks the row as seen every
few seconds while it runs, and as stopped when it stops cleanly.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from sqlalchemy import Column, Engine, MetaData, String, Table, Text, insert, select, update

from core.database import UtcDateTime
from core.settings import Settings

log = structlog.get_logger("engine.loaded_config")

metadata = MetaData()

loaded_config = Table(
    "engine_loaded_config",
    metadata,
    Column("process", String(200), primary_key=True),
    Column("roles", String(64), nullable=False),
    Column("started_at", UtcDateTime(), nullable=False),
    Column("loaded_at", UtcDateTime(), nullable=False),
    Column("seen_at", UtcDateTime(), nullable=False),
    Column("stopped_at", UtcDateTime()),
    Column("snapshot", Text, nullable=False),  # JSON, see `snapshot`
)

HEARTBEAT = 2.0
"""Seconds between a running process's `seen_at` updates."""
ALIVE = timedelta(seconds=10)
"""A process not seen for this long is taken to be gone (killed, or its host is down)."""

FORGET = timedelta(days=30)
"""Rows of processes not seen for this long are deleted when a process starts."""
SECRET_KEYS = frozenset({"broker", "database", "url"})
"""Settings whose values may carry a password: kept as a fingerprint only."""


@dataclass(frozen=True, slots=True)
class LoadedBy:
    """One engine process's row."""

    process: str
    roles: str
    started_at: datetime
    loaded_at: datetime
    seen_at: datetime
    stopped_at: datetime | None
    snapshot: dict[str, Any]

    def alive(self, now: datetime | None = None) -> bool:
        return self.stopped_at is None and (now or datetime.now(UTC)) - self.seen_at < ALIVE


def ensure_schema(engine: Engine) -> None:
    metadata.create_all(engine)


def _fingerprint(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """`{"ack": {"mode": "x"}}` → `{"ack.mode": "x"}`; secrets fingerprinted."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, inner in value.items():
            out.update(_flatten(inner, f"{prefix}{key}."))
        return out
    key = prefix[:-1]
    if key.rpartition(".")[2] in SECRET_KEYS and isinstance(value, str):
        return {key: _fingerprint(value)}
    return {key: value}


def file_key(path: Path, settings: Settings) -> str:
    """A file as the operator knows it: relative to routes.yaml's folder when below it."""
    resolved = path.resolve()
    try:
        return str(resolved.relative_to(settings.base_dir.resolve()))
    except ValueError:
        return str(resolved)


def file_hashes(files: Iterable[Path], settings: Settings) -> dict[str, str]:
    """Content hash of each file (mappings, includes, code tables); `missing` if unreadable."""
    out: dict[str, str] = {}
    for path in files:
        try:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            digest = "missing"
        out[file_key(path, settings)] = digest
    return dict(sorted(out.items()))


def snapshot(settings: Settings, files: Iterable[Path]) -> dict[str, Any]:
    """What a reload compares: each section flattened to `key: value` (secrets as
    fingerprints), routes by name, and the content hash of every file the mappings read."""
    data = settings.model_dump(mode="json", by_alias=True)
    return {
        "engine": _flatten(data["engine"]),
        "retry": _flatten(data["retry"]),
        "channels": {name: _channel(name, c, settings, data) for name, c in data["channels"].items()},
        "destinations": {name: _flatten(d) for name, d in data["destinations"].items()},
        "routes": {r["name"]: _flatten(r) for r in data["routes"]},
        "files": file_hashes(files, settings),
    }


def _channel(name: str, channel: dict[str, Any], settings: Settings, data: dict[str, Any]) -> dict[str, Any]:
    """A channel's keys, and those of the sections it reads (the `alerts` channel: `alerts:`),
    so a change there reconfigures it."""
    flat = _flatten(channel)
    for section in settings.channels[name].reads_sections:
        flat.update(_flatten(data.get(section) or {}, f"{section}."))
    return flat


def record(
    engine: Engine, process: str, roles: Iterable[str], snap: dict[str, Any], *, started: bool
) -> None:
    """This process loaded `snap` (at start, `started=True`, or after a reload)."""
    now = datetime.now(UTC)
    values = {"loaded_at": now, "seen_at": now, "stopped_at": None, "snapshot": json.dumps(snap)}
    with engine.begin() as conn:
        if started:
            gone = (loaded_config.c.process == process) | (loaded_config.c.seen_at < now - FORGET)
            conn.execute(loaded_config.delete().where(gone))
            row = {"process": process, "roles": ",".join(sorted(roles)), "started_at": now, **values}
            conn.execute(insert(loaded_config).values(**row))
        else:
            conn.execute(update(loaded_config).where(loaded_config.c.process == process).values(**values))


def mark(engine: Engine, process: str, *, stopped: bool = False) -> None:
    now = datetime.now(UTC)
    values: dict[str, Any] = {"stopped_at": now} if stopped else {"seen_at": now}
    with engine.begin() as conn:
        conn.execute(update(loaded_config).where(loaded_config.c.process == process).values(**values))


def read_all(engine: Engine) -> list[LoadedBy]:
    """Every process row, most recently loaded first (none if no engine ever ran here)."""
    ensure_schema(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(loaded_config).order_by(loaded_config.c.loaded_at.desc())).mappings().all()
    return [
        LoadedBy(
            r["process"],
            r["roles"],
            r["started_at"],
            r["loaded_at"],
            r["seen_at"],
            r["stopped_at"],
            json.loads(r["snapshot"]),
        )
        for r in rows
    ]


def running(engine: Engine) -> list[LoadedBy]:
    """The processes that look alive now."""
    now = datetime.now(UTC)
    return [p for p in read_all(engine) if p.alive(now)]


class Heartbeat:
    """Marks this process as seen every HEARTBEAT seconds, and as stopped on `stop`."""

    def __init__(self, engine: Engine, process: str, interval: float = HEARTBEAT) -> None:
        self.engine = engine
        self.process = process
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loaded-config", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        try:
            mark(self.engine, self.process, stopped=True)
        except Exception as exc:  # the database is away: the row goes stale by itself
            log.warning("loaded_config_unwritable", error=type(exc).__name__)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                mark(self.engine, self.process)
            except Exception as exc:
                log.warning("loaded_config_unwritable", error=type(exc).__name__)
