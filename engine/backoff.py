"""Waiting out an outage: retry forever with capped exponential back-off, logging each wait.

Used where giving up would lose nothing but also gain nothing: the work is in
the journal or the queue, and the only useful thing to do is to try again once
the broker or the database is back.
"""

from __future__ import annotations

import threading

import structlog
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential
from tenacity.stop import stop_base

log = structlog.get_logger("engine.backoff")


class _StopWhen(stop_base):
    def __init__(self, event: threading.Event | None) -> None:
        self.event = event

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.event is not None and self.event.is_set()


def until_it_works(what: str, stop: threading.Event | None = None, max_wait: float = 10.0) -> Retrying:
    """`for attempt in until_it_works("publish"): with attempt: ...` — stops only on `stop`."""

    def note(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        wait = state.next_action.sleep if state.next_action else 0
        log.warning(f"{what}_failed", error=type(exc).__name__, detail=str(exc)[:300], retry_in=wait)

    return Retrying(
        wait=wait_exponential(multiplier=0.5, max=max_wait),
        retry=retry_if_exception_type(Exception),
        stop=_StopWhen(stop),
        before_sleep=note,
        sleep=stop.wait if stop is not None else _sleep,
        reraise=True,
    )


def _sleep(seconds: float) -> None:
    threading.Event().wait(seconds)
