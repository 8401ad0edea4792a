"""Operator requests: queued by one process, carried out by the running engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, update

from core.database import make_engine
from engine import operator_requests as ops
from support import pg_schema


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'engine.db'}")
        yield engine
        engine.dispose()
        return
    with pg_schema() as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def _submit(db: Engine, kind: str, scope: str = ops.ONE, **params: Any) -> int:
    return ops.submit(db, kind, params, actor="王芳", os_user="ops", scope=scope)


def test_a_request_is_queued_then_carried_out_once_with_its_outcome(db: Engine) -> None:
    seen: list[dict[str, Any]] = []

    def replay(params: dict[str, Any], request: ops.Request) -> dict[str, Any]:
        seen.append(params)
        return {"replayed": params["ids"], "by": request.actor}

    rid = _submit(db, "replay", ids=[3, 4])
    queued = ops.get(db, rid)
    assert queued is not None and queued.status == ops.QUEUED and not queued.finished

    first = ops.RequestPoller(db, {"replay": replay}, name="a:1")
    second = ops.RequestPoller(db, {"replay": replay}, name="b:2")
    assert first.poll_once() is True
    assert second.poll_once() is False  # already carried out: nobody runs it again

    done = ops.get(db, rid)
    assert done is not None and done.status == ops.DONE and done.taken_by == "a:1"
    assert done.outcome == {"replayed": [3, 4], "by": "王芳"}
    assert seen == [{"ids": [3, 4]}]


def test_a_failing_handler_fails_the_request_with_the_reason(db: Engine) -> None:
    def broken(params: dict[str, Any], request: ops.Request) -> dict[str, Any]:
        raise RuntimeError("record store refused the connection")

    rid = _submit(db, "replay", ids=[1])
    ops.RequestPoller(db, {"replay": broken}).poll_once()
    failed = ops.get(db, rid)
    assert failed is not None and failed.status == ops.FAILED
    assert failed.outcome == {"error": "RuntimeError: record store refused the connection"}


def test_a_process_takes_only_the_kinds_it_can_carry_out(db: Engine) -> None:
    rid = _submit(db, "reprocess", ids=[1])
    deliver_only = ops.RequestPoller(db, {"replay": lambda p, r: {}})
    assert deliver_only.poll_once() is False
    request = ops.get(db, rid)
    assert request is not None and request.status == ops.QUEUED


def test_a_request_whose_process_died_is_taken_again_after_its_lease(db: Engine) -> None:
    rid = _submit(db, "replay", ids=[7])
    stalled = ops.RequestPoller(db, {"replay": lambda p, r: {}}, name="dead:1")
    assert stalled._claim_one() is not None  # claimed, then the process is killed
    other = ops.RequestPoller(db, {"replay": lambda p, r: {"ok": True}}, name="live:2")
    assert other.poll_once() is False  # the lease still holds
    with db.begin() as conn:
        expired = datetime.now(UTC) - timedelta(seconds=1)
        conn.execute(update(ops.requests).where(ops.requests.c.id == rid).values(lease_until=expired))
    assert other.poll_once() is True
    request = ops.get(db, rid)
    assert request is not None and request.status == ops.DONE and request.taken_by == "live:2"


def test_a_request_for_all_is_answered_by_every_running_process(db: Engine) -> None:
    pollers = [ops.RequestPoller(db, {"reload": lambda p, r: {"routes": 6}}, name=f"p:{i}") for i in range(2)]
    rid = _submit(db, "reload", scope=ops.ALL)
    assert [p.poll_once() for p in pollers] == [True, True]
    assert [p.poll_once() for p in pollers] == [False, False]  # each answers once
    request = ops.get(db, rid)
    assert request is not None
    assert request.results == {"p:0": (ops.DONE, {"routes": 6}), "p:1": (ops.DONE, {"routes": 6})}
    ops.finish(db, rid, ops.DONE, {"processes": 2})
    closed = ops.get(db, rid)
    assert closed is not None and closed.finished and closed.outcome == {"processes": 2}


def test_a_process_started_after_a_request_for_all_does_not_apply_it(db: Engine) -> None:
    rid = _submit(db, "reload", scope=ops.ALL)
    later = ops.RequestPoller(db, {"reload": lambda p, r: {}})
    later.started_at = datetime.now(UTC) + timedelta(seconds=1)  # it read today's files at start
    assert later.poll_once() is False
    assert ops.get(db, rid).results == {}  # type: ignore[union-attr]


def test_the_running_poller_picks_a_request_up_within_a_second(db: Engine) -> None:
    ran = threading.Event()

    def replay(params: dict[str, Any], request: ops.Request) -> dict[str, Any]:
        ran.set()
        return {}

    poller = ops.RequestPoller(db, {"replay": replay}, interval=0.2)
    poller.start()
    try:
        rid = _submit(db, "replay", ids=[1])
        finished = ops.wait(db, rid, timeout=5)
        assert finished is not None and finished.status == ops.DONE
        assert ran.is_set()
        assert (finished.finished_at - finished.requested_at).total_seconds() < 1.0  # type: ignore[operator]
    finally:
        poller.stop()
