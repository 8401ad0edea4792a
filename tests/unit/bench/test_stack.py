"""The bench starts the engine as an operator would, with the routes the page describes.

Checks the generated routes (partitions on RabbitMQ + PostgreSQL only), the command
lines of split-role processes and the queues removed afterwards; no process is started
and no service is touched.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from bench.scenarios import LAYOUTS, Layout, _halves
from bench.stack import PARTITIONS, EngineProcess, Stack, queue_names


def test_embedded_routes_keep_the_shipped_single_queue(tmp_path: Path) -> None:
    with Stack("embedded", tmp_path) as stack:
        doc = yaml.safe_load(stack.routes().read_text(encoding="utf-8"))
    assert doc["engine"]["broker"] == "memory://"
    assert "partitions" not in doc["destinations"]["record_store"]


def test_partitioned_routes_split_the_record_store(tmp_path: Path) -> None:
    with Stack("embedded", tmp_path, partitions=4) as stack:
        doc = yaml.safe_load(stack.routes().read_text(encoding="utf-8"))
    assert doc["destinations"]["record_store"]["partitions"] == 4


def test_split_layouts_cover_every_partition_once() -> None:
    by_key: dict[str, Layout] = {x.key: x for x in LAYOUTS}
    assert [p.roles for p in by_key["a"].processes] == [()]
    assert [p.roles for p in by_key["b"].processes] == [("ingest", "transform"), ("deliver",)]
    delivers = [p.partitions for p in by_key["c"].processes if p.roles == ("deliver",)]
    assert delivers == list(_halves(PARTITIONS))
    shards = [p.shard for p in by_key["d"].processes if p.roles == ("transform",)]
    assert shards == ["0/2", "1/2"]
    assert [p.partitions for p in by_key["d"].processes if p.roles == ("deliver",)] == delivers
    assert _halves(4) == ("0-1", "2-3")
    assert _halves(2) == ("0", "1")


def test_engine_command_line_names_roles_and_partitions(tmp_path: Path) -> None:
    proc = EngineProcess(tmp_path / "routes.yaml", ("deliver",), tmp_path, "2-3")
    argv = proc.argv()
    assert argv[argv.index("run") :] == [
        "run",
        "--config",
        str(tmp_path / "routes.yaml"),
        "--role",
        "deliver",
        "--partitions",
        "2-3",
    ]


def test_transform_command_line_names_its_shard(tmp_path: Path) -> None:
    argv = EngineProcess(tmp_path / "routes.yaml", ("transform",), tmp_path, shard="1/2").argv()
    assert argv[-4:] == ["--role", "transform", "--shard", "1/2"]


def test_cleanup_names_every_partition_queue() -> None:
    names = queue_names("benchx", 4)
    assert "benchx.record_store.p0" in names and "benchx.record_store.p3" in names
    assert "benchx.record_store.p2.retry.60s" in names
    assert queue_names("benchx", 1)[0] == "benchx.record_store"
