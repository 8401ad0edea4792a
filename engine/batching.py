"""Draining a work queue in batches, the shape every worker thread of the engine shares.

`None` on the queue means "stop once what came before is done".
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def run_batches(
    q: queue.SimpleQueue[T | None], handle: Callable[[list[T]], None], max_items: int, max_wait: float = 0.0
) -> None:
    """Block for the first item, gather up to `max_items` arriving within `max_wait`
    seconds, hand them to `handle`; return after the batch in which `None` arrived."""
    while True:
        first = q.get()
        if first is None:
            return
        batch = [first]
        deadline = time.monotonic() + max_wait
        stopping = False
        while len(batch) < max_items:
            try:
                item = q.get(timeout=max(0.0, deadline - time.monotonic())) if max_wait else q.get_nowait()
            except queue.Empty:
                break
            if item is None:
                stopping = True
                break
            batch.append(item)
        handle(batch)
        if stopping:
            return
