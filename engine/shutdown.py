"""How `mch-engine run` stops: on SIGINT, SIGTERM or SIGPWR, within a stated bound.

A UPS on battery tells the machine through NUT or apcupsd, which runs `shutdown` (systemd
sends the unit SIGTERM) or signals init with SIGPWR; either must leave nothing half done.
The stop first closes every listener (new connections are refused), then answers every
message already received and lets the journal writer commit it, then finishes queued work
(docs/operations.md, "停机与 UPS"). Whatever is not finished when the grace ends is in the
journal and is re-driven at the next start, so the process may leave: a watchdog ends it
`HARD_STOP_MARGIN` seconds after the grace even if a thread is stuck in a database call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger("engine.shutdown")

DEFAULT_STOP_GRACE = 30.0
HARD_STOP_MARGIN = 5.0  # seconds past the grace before the watchdog ends the process
HARD_STOP_EXIT = 1


def stop_signals() -> list[signal.Signals]:
    """The signals that stop the engine gracefully (SIGPWR exists on Linux only)."""
    found = [signal.SIGINT, signal.SIGTERM]
    power = getattr(signal, "SIGPWR", None)
    if power is not None:
        found.append(power)
    return found


def on_stop_signals(loop: asyncio.AbstractEventLoop, stop: Callable[[str], None]) -> None:
    """Call `stop(signal name)` on the loop when a stop signal arrives (again: nothing more)."""
    for sig in stop_signals():
        loop.add_signal_handler(sig, stop, sig.name)


def start_watchdog(grace: float) -> threading.Timer:
    """End the process `grace + HARD_STOP_MARGIN` seconds from now unless cancelled: a stop
    that hangs must not outlast the UPS battery or systemd's TimeoutStopSec."""

    def expire() -> None:
        log.error("stop_overdue", grace_seconds=grace, margin_seconds=HARD_STOP_MARGIN)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(HARD_STOP_EXIT)

    timer = threading.Timer(grace + HARD_STOP_MARGIN, expire)
    timer.daemon = True
    timer.start()
    return timer
