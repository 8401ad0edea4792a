"""The CLI side of an operator request: queue it, see it taken, wait for its outcome.

A command that asks the running engine to act (replay, reprocess) must say plainly what
happened: carried out, or queued with nobody to carry it out (no engine running), or, with
`--wait`, what became of the records it sent (delivered, or failed again and back in the
dead letters). Exit codes of such commands (docs/oncall.md):

    0  done (with --wait: every record sent was delivered)
    1  some id failed (unknown, still fails, or delivery failed again)
    2  usage, configuration or database problem
    3  queued but not carried out in time: no engine took it within PICKUP seconds, or
       --wait ran out before the outcome was known; the request stays queued
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine

from core import i18n
from engine import journal
from engine import operator_requests as ops

PICKUP_SECONDS = 5.0
"""How long a command waits for a running engine to take its request (it polls twice a second)."""
FINISH_SECONDS = 120.0
"""How long a command waits for a taken request to finish when not told otherwise."""
DEFAULT_WAIT = 120.0
"""`--wait` without a number: seconds to wait for the delivery outcome."""

EXIT_NOT_CARRIED_OUT = 3

Key = tuple[int, str, str]
SETTLED = frozenset({journal.DELIVERED, journal.DEAD})


_TEXT: dict[str, tuple[str, str]] = {
    "request_not_taken": (
        "已排队（请求 #{request}），但 {seconds:.0f} 秒内没有运行中的引擎接手。"
        "引擎在运行吗？（mch-engine run）引擎启动后会执行此请求。",
        "queued (request #{request}), but no running engine took it within {seconds:.0f} s. "
        "Is the engine running? (mch-engine run) It runs when the engine starts.",
    ),
    "request_not_finished": (
        "引擎 {process} 已接手请求 #{request}，但 {seconds:.0f} 秒内未完成；完成后见 deadletter audit",
        "engine {process} took request #{request} but did not finish within {seconds:.0f} s; "
        "its outcome will be in deadletter audit",
    ),
    "request_failed": (
        "引擎执行请求 #{request} 时出错：{error}",
        "the engine could not carry out request #{request}: {error}",
    ),
}
i18n.register(_TEXT)


@dataclass(frozen=True, slots=True)
class Followed:
    """A request as far as the command followed it."""

    id: int
    request: ops.Request | None
    finish: float

    @property
    def taken(self) -> bool:
        return self.request is not None and self.request.status != ops.QUEUED

    @property
    def finished(self) -> bool:
        return self.request is not None and self.request.finished

    def report_unfinished(self) -> int | None:
        """Say why there is no outcome to show (not taken, not finished, failed) and return the
        exit code; None when the request is done and its outcome can be shown."""
        request = self.request
        if request is None or not self.taken:
            print(i18n.t("request_not_taken", request=self.id, seconds=PICKUP_SECONDS))
            return EXIT_NOT_CARRIED_OUT
        if not request.finished:
            print(
                i18n.t("request_not_finished", process=request.taken_by, request=self.id, seconds=self.finish)
            )
            return EXIT_NOT_CARRIED_OUT
        if request.status != ops.DONE or not request.outcome:
            error = (request.outcome or {}).get("error", "-")
            print(i18n.t("request_failed", request=self.id, error=error), file=sys.stderr)
            return 1
        return None


def submit_and_follow(
    engine: Engine,
    kind: str,
    params: Mapping[str, Any],
    *,
    actor: str,
    os_user: str,
    pickup: float = PICKUP_SECONDS,
    finish: float = FINISH_SECONDS,
) -> Followed:
    """Queue a request; wait `pickup` seconds for an engine to take it, then `finish` for the end."""
    rid = ops.submit(engine, kind, params, actor=actor, os_user=os_user)
    return follow(engine, rid, pickup=pickup, finish=finish)


def follow(
    engine: Engine, rid: int, *, pickup: float = PICKUP_SECONDS, finish: float = FINISH_SECONDS
) -> Followed:
    """Wait `pickup` seconds for an engine to take a queued request, then `finish` for the end."""
    request = ops.wait(engine, rid, pickup, done=lambda r: r.status != ops.QUEUED)
    if request is not None and request.status != ops.QUEUED and not request.finished:
        request = ops.wait(engine, rid, finish)
    return Followed(rid, request, finish)


def wait_for_deliveries(engine: Engine, keys: Iterable[Key], timeout: float) -> dict[Key, str]:
    """Poll the journal until every delivery is `delivered` or `dead` (or the time is up);
    the last status of each (`pending`, `retrying` when it was not settled in time)."""
    wanted = [(int(j), d, r) for j, d, r in keys]
    deadline = time.monotonic() + timeout
    pause = threading.Event()
    while True:
        found = journal.delivery_statuses(engine, wanted)
        statuses = {k: found.get(k, journal.PENDING) for k in wanted}
        if all(s in SETTLED for s in statuses.values()) or time.monotonic() >= deadline:
            return statuses
        pause.wait(0.2)


def delivery_errors(engine: Engine, keys: Iterable[Key]) -> dict[Key, str]:
    """The last error kept for each delivery, for the line that says why it failed again."""
    from sqlalchemy import select

    c = journal.deliveries.c
    out: dict[Key, str] = {}
    with engine.connect() as conn:
        for jid, dest, rid in keys:
            error = conn.execute(
                select(c.last_error).where(
                    (c.journal_id == jid) & (c.destination == dest) & (c.record_id == rid)
                )
            ).scalar()
            out[(jid, dest, rid)] = error or ""
    return out
