"""Replay or reprocess dead letters through the running engine: the one path the CLI
(`deadletter replay|reprocess`), the dashboard's pages and its JSON API all take.

The audit entry is written first, then an operator request is queued for the engine
(engine/operator_requests.py) and followed until it is taken and done. When there is
nothing for the engine to do (ids unknown, closed, or a replay of a transform-stage dead
letter) the action runs here at once, audited like every action, and says why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from deadletter import actions, audit, store
from deadletter.actions import ActionResult
from deadletter.audit import Actor
from engine import operator_requests as ops
from engine import request_follow as follow

REPLAY, REPROCESS = "replay", "reprocess"


@dataclass(frozen=True, slots=True)
class Queued:
    """Either the request a running engine will carry out, or the answer given at once."""

    request_id: int | None
    result: ActionResult | None = None


@dataclass(frozen=True, slots=True)
class Carried:
    """Either the result of an action answered at once, or the request the engine followed."""

    result: ActionResult | None = None
    followed: follow.Followed | None = None


def queue(engine: Engine, action: str, ids: list[int], who: Actor, *, target: str | None = None) -> Queued:
    """Audit `replay` or `reprocess` of these dead letters and queue it for the running engine
    (the dashboard's forms stop here; the CLI and the API follow the request)."""
    if action not in (REPLAY, REPROCESS):
        raise ValueError(f"not an engine action: {action}")
    wanted = sorted(set(ids))
    rows = store.get_many(engine, wanted)
    if not any(engine_would_act(action, rows.get(i)) for i in wanted):

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


def carry_out(
    engine: Engine,
    action: str,
    ids: list[int],
    who: Actor,
    *,
    target: str | None = None,
    pickup: float = follow.PICKUP_SECONDS,
    finish: float = follow.FINISH_SECONDS,
) -> Carried:
    """Queue the action, then follow it until the engine took it and finished."""
    queued = queue(engine, action, ids, who, target=target)
    if queued.request_id is None:
        return Carried(result=queued.result)
    return Carried(followed=follow.follow(engine, queued.request_id, pickup=pickup, finish=finish))


def engine_would_act(action: str, row: dict[str, Any] | None) -> bool:
    if row is None or row["status"] != store.OPEN:
        return False
    return action != REPLAY or (row["stage"] == store.DELIVER and row["payload"] is not None)


def await_deliveries(engine: Engine, outcome: dict[str, Any], seconds: float) -> dict[int, str]:
    """Wait up to `seconds` for what a done request sent: per dead letter `delivered`,
    `failed_again` or `pending`. When every one settled, the audit entry says how."""
    sent = {int(i): [tuple(k) for k in keys] for i, keys in outcome["sent"].items()}
    everything = [k for keys in sent.values() for k in keys]
    statuses = follow.wait_for_deliveries(engine, everything, seconds)
    labels: dict[int, str] = {}
    for dl_id, keys in sent.items():
        now = [statuses.get(k, "pending") for k in keys]  # type: ignore[call-overload]
        if all(s == "delivered" for s in now):
            labels[dl_id] = "delivered"
        elif "dead" in now:
            labels[dl_id] = "failed_again"
        else:
            labels[dl_id] = "pending"
    if "pending" not in labels.values():
        failed = [i for i, v in labels.items() if v == "failed_again"]
        audit.settle_audit(
            engine,
            outcome["audit_id"],
            outcome=audit.FAILED if failed else audit.DONE,
            delivered=[i for i, v in labels.items() if v == "delivered"],
            failed=failed,
        )
    return labels
