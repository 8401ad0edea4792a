"""What changes between two configuration snapshots (engine/loaded_config.py).

`check --diff` shows it before a reload and `reload` reports it after; the running engine
uses `restart_needed` to refuse a reload it cannot carry out live. The diff is plain data
(JSON-able), so an engine process can send it to the CLI, which prints it in the
operator's language.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

RESTART_ENGINE_KEYS = ("broker", "database", "queue_prefix", "timezone", "journal", "http", "retention")
"""engine.* keys (and their sub-keys) that only a restart applies."""
RESTART_DESTINATION_KEYS = ("type", "partitions", "database")
"""Keys of a kept destination that only a restart applies (its queues and store); a
destination added with partitions > 1 needs one too."""
SECTIONS = ("channels", "routes", "destinations")


@dataclass(slots=True)
class SectionDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # name → keys that differ

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)


@dataclass(slots=True)
class ConfigDiff:
    channels: SectionDiff = field(default_factory=SectionDiff)
    routes: SectionDiff = field(default_factory=SectionDiff)
    destinations: SectionDiff = field(default_factory=SectionDiff)
    files: SectionDiff = field(default_factory=SectionDiff)  # mapping files, includes, code tables
    engine: list[str] = field(default_factory=list)  # engine.* keys that differ
    retry: list[str] = field(default_factory=list)
    listen: dict[str, tuple[str, str]] = field(default_factory=dict)  # channel → (old, new) address
    partitioned: list[str] = field(default_factory=list)  # added destinations with partitions > 1

    def __bool__(self) -> bool:
        parts = (self.channels, self.routes, self.destinations, self.files, self.engine, self.retry)
        return any(bool(p) for p in parts)

    @property
    def restart_needed(self) -> list[str]:
        """Dotted keys that changed and that only a restart applies."""
        keys = [f"engine.{k}" for k in self.engine if k.split(".")[0] in RESTART_ENGINE_KEYS]
        for name, changed in self.destinations.changed.items():
            keys += [
                f"destinations.{name}.{k}" for k in changed if k.split(".")[0] in RESTART_DESTINATION_KEYS
            ]
        # The in-process bus learns a destination's partitions at start.
        return keys + [f"destinations.{name}.partitions" for name in self.partitioned]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ConfigDiff:
        sections = {name: SectionDiff(**data[name]) for name in (*SECTIONS, "files")}
        listen = {k: (v[0], v[1]) for k, v in data.get("listen", {}).items()}
        return cls(
            **sections,
            engine=data["engine"],
            retry=data["retry"],
            listen=listen,
            partitioned=data.get("partitioned", []),
        )


def _keys_changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k))


def _section(old: dict[str, Any], new: dict[str, Any]) -> SectionDiff:
    diff = SectionDiff(added=sorted(new.keys() - old.keys()), removed=sorted(old.keys() - new.keys()))
    for name in sorted(old.keys() & new.keys()):
        if isinstance(old[name], dict):
            keys = _keys_changed(old[name], new[name])
            if keys:
                diff.changed[name] = keys
        elif old[name] != new[name]:
            diff.changed[name] = ["content"]
    return diff


def compare(old: dict[str, Any], new: dict[str, Any]) -> ConfigDiff:
    """What a move from snapshot `old` to snapshot `new` changes."""
    diff = ConfigDiff(
        channels=_section(old["channels"], new["channels"]),
        routes=_section(old["routes"], new["routes"]),
        destinations=_section(old["destinations"], new["destinations"]),
        files=_section(old["files"], new["files"]),
        engine=_keys_changed(old["engine"], new["engine"]),
        retry=_keys_changed(old["retry"], new["retry"]),
    )
    diff.partitioned = [n for n in diff.destinations.added if new["destinations"][n].get("partitions", 1) > 1]
    for name, keys in diff.channels.changed.items():
        if "listen" in keys:
            diff.listen[name] = (old["channels"][name]["listen"], new["channels"][name]["listen"])
    return diff


def empty_snapshot() -> dict[str, Any]:
    """The snapshot of nothing loaded: everything in a real one is `added`."""
    return {"engine": {}, "retry": {}, "channels": {}, "destinations": {}, "routes": {}, "files": {}}
