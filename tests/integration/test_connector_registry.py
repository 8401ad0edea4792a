"""The runtime builds whatever routes.yaml names through the registry: a channel type and a
destination type that exist only in this test carry a message from journal to delivery."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from kombu import Connection
from toy_connectors import PREPARED, SINKS, ToySource, toy_connectors

from support import AMQP_URL, REPO, RunningEngine, engine_backend, hl7, scalar, wait_until

ADT = hl7(
    "MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|TOY-1|P|2.5",
    "EVN|A04|20240321083200",
    "PID|1||0010012345^^^HIS^PI||测试^^^^^^L||19940315|F",
)


def _routes(folder: Path, database: str, broker: str, prefix: str) -> Path:
    message = ADT.decode().replace("\\", "\\\\").replace("\r", "\\r")
    text = f"""\
version: 1
engine:
  broker: {broker!r}
  database: {database!r}
  queue_prefix: {prefix}
  allowed_paths: [{str(REPO / "mappings")!r}]
channels:
  drop:
    type: toy_drop
    messages: ["{message}"]
routes:
  - name: persons
    from: drop
    mapping: {REPO / "mappings/his/adt_person.yaml"}
    to: kept
destinations:
  kept: {{type: toy_sink, label: persons}}
"""
    path = folder / "routes.yaml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("backend", ["embedded", "postgresql+rabbitmq"])
def test_runtime_builds_registered_types(tmp_path: Path, backend: str) -> None:
    """The toy source journals its message, the transform maps it and the toy sink gets the
    person record; the journal shows it routed and delivered like any other channel's."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    with toy_connectors(), engine_backend(backend, tmp_path) as (database, broker):
        routes = _routes(tmp_path, database, broker, prefix)
        try:
            with RunningEngine(routes, env={}) as engine:
                assert [type(s) for s in engine.runtime.sources] == [ToySource]
                assert PREPARED == ["kept"]
                sink = SINKS["kept"]
                wait_until(lambda: len(sink.stored) == 1, timeout=30)
                journal = engine.journal
                wait_until(
                    lambda: (
                        scalar(journal, "select count(*) from journal_deliveries where status = 'delivered'")
                        == 1
                    )
                )
                assert scalar(journal, "select channel from journal_messages") == "drop"
                assert scalar(journal, "select status from journal_messages") == "routed"
                assert engine.runtime.ports() == {}
            assert sink.label == "persons"
            assert [e["record_type"] for e in sink.stored] == ["Person"]
        finally:
            if broker != "memory://":
                with Connection(AMQP_URL) as conn:
                    conn.default_channel.queue_delete(f"{prefix}.kept")


def test_live_reload_adds_a_registered_source(tmp_path: Path) -> None:
    """A reload that adds a channel of a registered type builds and starts it through the
    registry, without a listener to take: its message reaches the destination."""
    with toy_connectors():
        routes = _routes(tmp_path, f"sqlite:///{tmp_path / 'engine.db'}", "memory://", "toy")
        with RunningEngine(routes, env={}) as engine:
            sink = SINKS["kept"]
            wait_until(lambda: len(sink.stored) == 1, timeout=30)
            text = routes.read_text(encoding="utf-8")
            second = text.split("channels:\n", 1)[1].split("routes:", 1)[0].replace("drop:", "late:")
            text = text.replace("routes:", second.replace("TOY-1", "TOY-2") + "routes:", 1)
            routes.write_text(text.replace("from: drop", "from: [drop, late]"), encoding="utf-8")
            outcome = engine.runtime.reloader.reload()  # type: ignore[union-attr]
            assert (outcome.result, outcome.reasons, outcome.warnings) == ("reloaded", [], [])
            wait_until(lambda: len(sink.stored) == 2, timeout=30)
            assert sorted(s.name for s in engine.runtime.sources) == ["drop", "late"]
            channels = {
                r[0] for r in engine.journal.connect().exec_driver_sql("select channel from journal_messages")
            }
            assert channels == {"drop", "late"}


def test_status_banner_and_mapping_run_ask_the_connector_not_its_type(tmp_path: Path) -> None:
    """A channel with no port and a destination with no database: `status` expects no
    listener for it, the run banner lists neither as a listener or a store, and `mapping run`
    examines a message on that channel with the engine's defaults."""
    from engine.mapping_trial import try_file
    from monitors import engine_status, run_banner

    with toy_connectors(), engine_backend("embedded", tmp_path) as (database, broker):
        routes = _routes(tmp_path, database, broker, f"t{uuid.uuid4().hex[:10]}")
        with RunningEngine(routes, env={}) as engine:
            runtime = engine.runtime
            wait_until(lambda: len(SINKS["kept"].stored) == 1, timeout=30)

            status = engine_status.collect(runtime.settings)
            assert [(c.name, c.listen, c.received) for c in status.channels] == [("drop", "-", 1)]
            assert not [p for p in status.problems if p.startswith("channel_not_listening")]

            assert run_banner.listeners(runtime) == "-"
            lines = run_banner.backend_lines(runtime)
            assert not [line for line in lines if "kept" in line]

            (trial,) = try_file(ADT, runtime.settings, runtime.router(), "drop")
            assert (trial.status, trial.control_id) == ("routed", "TOY-1")
            assert trial.encoding == "utf-8"
