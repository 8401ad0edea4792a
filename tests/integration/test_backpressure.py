"""The in-process bus keeps memory bounded: the transform waits for the deliver stage."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from core.database import make_engine
from core.journal import Accepted
from core.settings import load_settings
from engine import journal, pipeline
from engine.bus import Bus
from engine.pipeline import TransformWorker
from engine.runtime import EngineRuntime
from support import hl7, wait_until, write_routes


def adt(n: int) -> bytes:
    return hl7(
        f"MSH|^~\\&|HIS|FY01|MCHENGINE|FY01|20240321083215||ADT^A04^ADT_A01|BP-{n}|P|2.5",
        "EVN|A04|20240321083200",
        f"PID|1||00200{n:05d}^^^HIS^PI||测试{n}^^^^^^L||19940315|F",
    )


def test_transform_waits_while_the_deliver_stage_is_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No consumer: the transform stops after a few bundles wait on the bus (the rest stay
    `received` in the journal); once a consumer drains the queue, everything goes through."""
    monkeypatch.setattr(pipeline, "MAX_WAITING", 2)
    monkeypatch.setattr(pipeline, "LINGER", 0.0)
    routes = write_routes(tmp_path, database=f"sqlite:///{tmp_path}/engine.db")
    settings = load_settings(routes)
    db = make_engine(settings.engine.database)
    journal.ensure_schema(db)
    prefix = f"t{uuid.uuid4().hex[:8]}"
    bus = Bus("memory://", prefix, {"record_store": 1})
    worker = TransformWorker(EngineRuntime(settings).router(), db, lambda: Bus("memory://", prefix), batch=10)
    worker.start()
    try:
        worker.submit([Accepted(n, "hospital", adt(n), "utf-8") for n in range(1, 201)])
        wait_until(lambda: (bus.waiting("record_store") or 0) > 2, timeout=10)
        stalled = worker.processed
        threading.Event().wait(0.5)
        assert worker.processed == stalled < 200
        assert (bus.waiting("record_store") or 0) <= 3

        taken: list[dict[str, Any]] = []
        stop = threading.Event()
        consumer = threading.Thread(
            target=Bus("memory://", prefix).consume, args=("record_store", taken.extend, stop)
        )
        consumer.start()
        wait_until(lambda: len(taken) == 200, timeout=30)
        stop.set()
        consumer.join(5)
        assert sorted(e["journal_id"] for e in taken) == list(range(1, 201))
    finally:
        worker.stop()
        db.dispose()
