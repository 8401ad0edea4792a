"""What every source counts, under the names the monitors sum across processes (the journal's
outcomes for what it handed over); a source type adds counters of its own by subclassing."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, fields

__all__ = ["SUMMED", "SourceCounters", "stop_thread"]


@dataclass(slots=True)
class SourceCounters:
    received: int = 0
    accepted: int = 0
    rejected: int = 0
    duplicates: int = 0  # the journal already held these bytes (a resend, a re-read row)
    reused: int = 0  # accepted under a control id the sender had used for other bytes
    journal_errors: int = 0


SUMMED = tuple(f.name for f in fields(SourceCounters) if f.name != "journal_errors")


async def stop_thread(stop: threading.Event, thread: threading.Thread | None, grace: float) -> None:
    """End a source's worker thread: tell it to stop, and wait for it up to `grace` (at least
    a second, so a look in progress can finish its commit)."""
    stop.set()
    if thread is not None:
        await asyncio.get_running_loop().run_in_executor(None, thread.join, max(grace, 1.0))
