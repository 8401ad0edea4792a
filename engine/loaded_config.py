"""What each running engine process has loaded.

`mch-engine check --diff` compares the files on disk with what the running engine
uses, and `mch-engine reload` needs to know which processes should answer. So every
engine process keeps, in its heartbeat row (engine/heartbeat.py, the one table of
running processes), a snapshot of its settings (secrets as fingerprints, never the URL
itself) and the content hash of every mapping file, include and code table it compiled,
written at start and after each reload.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core.settings import Settings
from engine import heartbeat

SECRET_KEYS = frozenset({"broker", "database", "url"})
"""Settings whose values may carry a password: kept as a fingerprint only."""


@dataclass(frozen=True, slots=True)
class LoadedBy:
    """What one engine process loaded, and whether it runs."""

    process: str
    roles: str
    started_at: datetime
    loaded_at: datetime
    seen_at: datetime
    stopped_at: datetime | None
    snapshot: dict[str, Any]

    def alive(self, now: datetime | None = None) -> bool:
        seen_for = (now or datetime.now(UTC)) - self.seen_at
        return self.stopped_at is None and seen_for <= heartbeat.STALE_AFTER


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
    fingerprints), routes by name, the content hash of every file the mappings read, and of
    each file a channel reads at start (a `tls:` certificate, as `<key>.content`)."""
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
    for key, path in settings.channels[name].read_files(settings).items():
        flat[f"{key}.content"] = _content(path)
    return flat


def _content(path: Path) -> str:
    """A file's content as a fingerprint (a key's too: a hash, never the key)."""
    try:
        return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return "missing"


def read_all(engine: Engine) -> list[LoadedBy]:
    """Every process row with what it loaded, most recently loaded first (none if no engine
    ever ran here); a cleanly stopped process's row too, until its successor starts."""
    rows = [b for b in heartbeat.read_all(engine, stopped=True) if b.snapshot is not None]
    return sorted(
        (
            LoadedBy(
                b.process,
                ",".join(b.roles),
                b.started_at,
                b.loaded_at or b.started_at,
                b.heartbeat_at,
                b.stopped_at,
                b.snapshot or {},
            )
            for b in rows
        ),
        key=lambda row: row.loaded_at,
        reverse=True,
    )


def running(engine: Engine) -> list[LoadedBy]:
    """The processes that look alive now."""
    now = datetime.now(UTC)
    return [p for p in read_all(engine) if p.alive(now)]
