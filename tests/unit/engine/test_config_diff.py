"""Snapshots of loaded configuration and what differs between two of them (reload, check --diff)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from core.settings import load_settings
from engine.config_diff import ConfigDiff, compare, empty_snapshot
from engine.loaded_config import snapshot

ROUTES = """\
version: 1
engine:
  database: postgresql+psycopg://mch:s3cret-pw@db.example:5432/mch
  broker: amqp://mch:s3cret-pw@mq.example:5672/mch
channels:
  his: {type: mllp, listen: 127.0.0.1:2575}
  lis: {type: mllp, listen: 127.0.0.1:2576, encoding: gb18030}
routes:
  - {name: persons, from: [his], mapping: adt.yaml, to: [record_store]}
destinations:
  record_store: {type: record_store}
"""


def _snapshot(folder: Path, text: str, mapping: str = "records: []\n") -> dict[str, object]:
    (folder / "routes.yaml").write_text(textwrap.dedent(text), encoding="utf-8")
    (folder / "adt.yaml").write_text(mapping, encoding="utf-8")
    settings = load_settings(folder / "routes.yaml", env={})
    return snapshot(settings, [folder / "adt.yaml"])


def test_a_snapshot_keeps_no_password_but_sees_a_changed_url(tmp_path: Path) -> None:
    first = _snapshot(tmp_path, ROUTES)
    assert "s3cret" not in json.dumps(first)
    assert "db.example" not in json.dumps(first)
    second = _snapshot(tmp_path, ROUTES.replace("db.example", "db2.example"))
    diff = compare(first, second)
    assert diff.engine == ["database"]
    assert diff.destinations.changed == {"record_store": ["database"]}  # it defaults to the engine's
    assert diff.restart_needed == ["engine.database", "destinations.record_store.database"]


def test_channels_routes_destinations_and_files_added_removed_changed(tmp_path: Path) -> None:
    first = _snapshot(tmp_path, ROUTES)
    changed = (
        ROUTES.replace("listen: 127.0.0.1:2576, encoding: gb18030", "listen: 127.0.0.1:2577, encoding: utf-8")
        .replace(
            "  his: {type: mllp, listen: 127.0.0.1:2575}\n", "  pacs: {type: mllp, listen: 127.0.0.1:2578}\n"
        )
        .replace("from: [his]", "from: [pacs]")
        .replace("to: [record_store]", "to: [archive]")
        + "  archive: {type: record_store, partitions: 2}\n"
    )
    second = _snapshot(tmp_path, changed, mapping="records: []\n# edited\n")
    diff = compare(first, second)
    assert (diff.channels.added, diff.channels.removed) == (["pacs"], ["his"])
    assert diff.channels.changed == {"lis": ["encoding", "listen"]}
    assert diff.listen == {"lis": ("127.0.0.1:2576", "127.0.0.1:2577")}
    assert diff.routes.changed == {"persons": ["from", "to"]}
    assert diff.destinations.added == ["archive"]
    assert diff.files.changed == {"adt.yaml": ["content"]}
    # All of it applies live but a new destination's partitions (the in-process bus's are fixed).
    assert diff.restart_needed == ["destinations.archive.partitions"]
    assert ConfigDiff.from_json(json.loads(json.dumps(diff.to_json()))) == diff


def test_the_same_files_make_no_diff_and_nothing_loaded_makes_everything_new(tmp_path: Path) -> None:
    first = _snapshot(tmp_path, ROUTES)
    assert not compare(first, _snapshot(tmp_path, ROUTES))
    fresh = compare(empty_snapshot(), first)
    assert fresh.channels.added == ["his", "lis"] and fresh.files.added == ["adt.yaml"]
