"""Replay and reprocess handed to the running engine: one path for `mch-engine deadletter`
and the dashboard, so both audit and queue an action the same way.

The audit entry is written first, then the operator request (engine/operator_requests.py)
that a running engine carries out with its own bus and mappings. When the engine would
have nothing to do (ids unknown, already closed, a replay of a transform-stage dead
letter) the action runs here at once, audited like any other, and nothing is queued.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from deadletter import actions, audit, store
from deadletter.actions import ActionResult
from deadletter.audit import Actor
from engine import operator_requests as ops

REPLAY, REPROCESS = "replay", "reprocess"


@dataclass(frozen=True, slots=True)
class Queued:
    """Either the request a running engine will carry out, or the answer given at once."""

    request_id: int | None
    result: ActionResult | None = None


def queue(engine: Engine, action: str, ids: list[int], who: Actor, target: str | None = None) -> Queued:
    """Queue `replay` or `reprocess` of these dead letters for the running engine."""
    if action not in (REPLAY, REPROCESS):
        raise ValueError(f"not an engine action: {action}")
    wanted = sorted(set(ids))
    rows = store.get_many(engine, wanted)
    if not any(_engine_would_act(action, rows.get(i)) for i in wanted):

        def refuse(*_: Any) -> Any:
            raise AssertionError("nothing to publish")

        if action == REPLAY:
            return Queued(None, actions.replay(engine, wanted, refuse, who, target=target))
        return Queued(None, actions.reprocess(engine, wanted, refuse, refuse, who, target=target))
    audit_id = audit.begin_audit(
        engine,
        actor=who,
        action=action,
        target=target or ",".join(map(str, wanted)),
        detail={"ids": wanted, "queued": True},
    )
    params = {"ids": wanted, "audit_id": audit_id, "target": target}
    return Queued(ops.submit(engine, action, params, actor=who.name, os_user=who.os_user))


def _engine_would_act(action: str, row: dict[str, Any] | None) -> bool:
    if row is None or row["status"] != store.OPEN:
        return False
    return action != REPLAY or (row["stage"] == store.DELIVER and row["payload"] is not None)
