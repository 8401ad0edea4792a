"""Reading many repetitions costs time linear in the message (a channel whose limits allow them).

Each repetition used to re-split its whole field, so 50,000 took half a minute while the one
transform thread stalled every channel. The messages go through the transform stage as the
engine runs it (shipped routes and mappings, record validation), timed in CPU time.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import pytest

from bench.transform_bench import build_worker
from core.journal import Accepted

MSH = "MSH|^~\\&|{app}|FY01|MCHENGINE|FY01|20240321083215||{kind}|REP-{n}|P|2.5"


def adt(n: int) -> bytes:
    """An ADT^A04 whose PID-3 lists `n` HIS identifiers (read through `where` rules)."""
    ids = "~".join(f"{i:06d}^^^HIS^PI" for i in range(n))
    segments = [MSH.format(app="HIS", kind="ADT^A04^ADT_A01", n=n), "EVN|A04|20240321083200"]
    segments.append(f"PID|1||{ids}||陈思雨||19940315|F")
    return ("\r".join(segments) + "\r").encode()


def oru(n: int) -> bytes:
    """An ORU^R01 whose OBX-5 repeats `n` coded values (a typed, repeating observation)."""
    values = "~".join(f"Y{i}^黄色" for i in range(n))
    segments = [MSH.format(app="LIS", kind="ORU^R01^ORU_R01", n=n), "PID|1||0010023456^^^HIS^PI||陈思雨"]
    segments += ["OBR|1|O1|R1|CBC^血常规|||20240321080000", f"OBX|1|CE|COLOR^颜色||{values}||||||F"]
    return ("\r".join(segments) + "\r").encode()


@pytest.mark.parametrize("message", [adt, oru], ids=["PID-3", "OBX-5"])
def test_transform_time_grows_linearly_with_repetitions(message: Callable[[int], bytes]) -> None:
    """25,000 and 50,000 repetitions: the larger takes about twice as long, and well under a second."""
    worker = build_worker()

    def cpu_seconds(n: int) -> float:
        item = Accepted(n, "hospital", message(n), "utf-8")
        gc.collect()
        gc.disable()  # a full collection costs the whole test process's heap, not this message
        try:
            start = time.thread_time()
            outcome, _ = worker.transform(item)
            spent = time.thread_time() - start
        finally:
            gc.enable()
        assert outcome.status == "routed", outcome.error
        return spent

    cpu_seconds(1000)  # warm caches
    small = min(cpu_seconds(25_000) for _ in range(3))
    large = min(cpu_seconds(50_000) for _ in range(3))
    assert large < 1.0
    assert large / small < 3.0, (small, large)
