"""Who used the CPU during a measurement: the server, its services, the generator, the rest.

On a 2-core machine a figure is only as good as the quiet around it: a test suite
someone runs meanwhile halves the engine's share without any sign in the latencies.
So every measurement says how many cores went to the server process, to PostgreSQL and
RabbitMQ (processes of their service users), to the load generator (this process), and
to everything else — "other" well above zero means the point was disturbed.
Read from /proc (psutil is not a dependency).
"""

from __future__ import annotations

import os
import pwd
import time
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")
SERVICE_USERS = ("postgres", "rabbitmq")


def _service_uids() -> frozenset[int]:
    uids = set()
    for name in SERVICE_USERS:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            continue
    return frozenset(uids)


def process_cpu(pid: int) -> float:
    """utime + stime of a process in seconds, from /proc/<pid>/stat (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / _TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def _busy() -> float:
    """CPU seconds all cores spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat", encoding="ascii") as f:
        parts = f.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in parts[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICK


def _services(uids: frozenset[int]) -> dict[int, float]:
    out: dict[int, float] = {}
    if not uids:
        return out
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid in uids:
                    out[int(entry.name)] = process_cpu(int(entry.name))
            except OSError:
                continue
    return out


@dataclass(frozen=True, slots=True)
class CpuShare:
    """Cores used over a measurement (1.0 = one core busy the whole time)."""

    server: float
    services: float
    generator: float
    other: float


class CpuMeter:
    """`start()` before a measurement, `stop()` after; the server is the process(es) `pids`.

    A server process started during the measurement is added with `track` (all its CPU
    counts); one that ends during it is read with `settle` just before it stops, since
    /proc forgets a process once it is gone.
    """

    def __init__(self, *pids: int) -> None:
        self._base: dict[int, float] = dict.fromkeys(pids, 0.0)
        self._final: dict[int, float] = {}
        self._uids = _service_uids()

    def start(self) -> CpuMeter:
        self._t0 = time.perf_counter()
        self._busy0 = _busy()
        self._base = {pid: process_cpu(pid) for pid in self._base}
        self._gen0 = time.process_time()
        self._svc0 = _services(self._uids)
        return self

    def track(self, pid: int) -> None:
        self._base[pid] = 0.0

    def settle(self, pid: int) -> None:
        self._final[pid] = process_cpu(pid)

    def seconds_by_pid(self) -> dict[int, float]:
        """CPU seconds each server process used since `start` (read before `stop` returns)."""
        return {pid: self._final.get(pid, process_cpu(pid)) - base for pid, base in self._base.items()}

    def services_seconds(self) -> float:
        return sum(cpu - self._svc0.get(pid, 0.0) for pid, cpu in _services(self._uids).items())

    def stop(self) -> CpuShare:
        wall = max(time.perf_counter() - self._t0, 1e-9)
        busy = _busy() - self._busy0
        server = sum(self._final.get(pid, process_cpu(pid)) - base for pid, base in self._base.items())
        generator = time.process_time() - self._gen0
        services = sum(cpu - self._svc0.get(pid, 0.0) for pid, cpu in _services(self._uids).items())
        other = max(0.0, busy - server - generator - services)
        return CpuShare(server / wall, services / wall, generator / wall, other / wall)


def busy_elsewhere(sample: float = 0.5) -> float:
    """Cores busy outside this process over `sample` seconds."""
    busy0, own0, t0 = _busy(), time.process_time(), time.perf_counter()
    time.sleep(sample)
    wall = time.perf_counter() - t0
    return max(0.0, (_busy() - busy0) - (time.process_time() - own0)) / wall


def wait_for_quiet(limit: float, threshold: float = 0.25) -> float:
    """Wait (at most `limit` seconds) until the machine is idle apart from this process.

    Called before each measurement, when the server under test is started and idle: on
    a shared machine a test suite someone else runs would otherwise land in the figures.
    Returns the seconds waited beyond the first sample; after `limit` the measurement
    goes ahead anyway, and its `other` CPU column tells.
    """
    start = time.monotonic()
    while busy_elsewhere() > threshold and time.monotonic() - start < limit:
        time.sleep(1.0)
    waited = time.monotonic() - start
    return waited if waited > 1.0 else 0.0
