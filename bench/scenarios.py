"""The scenarios: what is measured, on which stack, and how the figures are read.

- ingest: MLLP → durable journal → ACK. For each C, a fresh engine process on fresh
  stores, `warmup` seconds of load, then `duration` seconds measured; the same for every
  peer. The engine runs as `mch-engine run` runs it (all roles in one process); on
  RabbitMQ + PostgreSQL also as `--role ingest` alone, the split a site uses to keep
  ingest apart from the rest.
- e2e: from the write of a message's frame until its record is committed in the store,
  read from the store's own `stored_at` (records and persons, by MSH-10) and the
  journal (`received_at`, and the time the delivery was marked done). A run long enough
  to be a sustained rate (first send to last store commit) at full speed, then one paced
  at 1,000 msg/s offered. On RabbitMQ + PostgreSQL the full-speed run is repeated with
  the roles split over processes (`LAYOUTS`): does a second deliver process add rate?
- backlog: N messages journaled while nothing consumes them (an engine with
  `--role ingest`, on either backend), then an engine with all roles started on the
  same stores: the time until the journal shows every delivery done.
- soak: M messages through one engine; its RSS (VmRSS from /proc) sampled every 1,000
  ACKs (more often in short runs); start, middle and end, the drift from middle to
  end, and once more after waiting for the backlog to drain.

Default sizes (e2e 10,000 at C=16, paced 5,000, backlog 5,000, soak 10,000) are chosen
so that the whole run takes about 10 minutes at the rates this engine reaches on 2
cores; `--full` gives the issue's sizes for the backlog and the soak.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench.cpu import CpuMeter, CpuShare, wait_for_quiet
from bench.load import LoadResult, percentile, run_async, run_load
from bench.messages import MessageFactory
from bench.peers import PeerProcess, install_medplum, medplum_available, medplum_peer, python_peer
from bench.stack import PARTITIONS, EngineProcess, Stack, free_port, services_up


@dataclass(frozen=True)
class Role:
    """One engine process of a layout: its `--role`s ((): all), `--partitions` and `--shard`."""

    roles: tuple[str, ...] = ()
    partitions: str = ""
    shard: str = ""

    def describe(self) -> str:
        if not self.roles:
            return "all roles"
        text = "+".join(self.roles)
        detail = self.partitions or self.shard
        return f"{text} ({detail})" if detail else text


@dataclass(frozen=True)
class Layout:
    """How the engine's roles are spread over processes for an end-to-end run."""

    key: str
    label: str
    processes: tuple[Role, ...]

    def describe(self) -> str:
        return " | ".join(p.describe() for p in self.processes)


def _halves(n: int) -> tuple[str, str]:
    """`--partitions` of two deliver processes sharing `n` partitions: "0-1", "2-3"."""
    mid = n // 2
    return (f"0-{mid - 1}" if mid > 1 else "0"), (f"{mid}-{n - 1}" if n - mid > 1 else f"{mid}")


_LOW, _HIGH = _halves(PARTITIONS)
FRONT = Role(("ingest", "transform"))
LAYOUTS = (
    Layout("a", "(a) all roles, 1 process", (Role(),)),
    Layout("b", "(b) ingest+transform, 1 deliver", (FRONT, Role(("deliver",)))),
    Layout(
        "c",
        "(c) ingest+transform, 2 deliver",
        (FRONT, Role(("deliver",), _LOW), Role(("deliver",), _HIGH)),
    ),
    Layout(
        "d",
        "(d) ingest, 2 transform, 2 deliver",
        (
            Role(("ingest",)),
            Role(("transform",), shard="0/2"),
            Role(("transform",), shard="1/2"),
            Role(("deliver",), _LOW),
            Role(("deliver",), _HIGH),
        ),
    ),
)
"""(a) as shipped; (b) and (c) split the roles as a site does to scale delivery out; (d)
also spreads the CPU-bound transform over two processes (`--shard`)."""


@dataclass
class Plan:
    """Everything a run was asked to do (the CLI fills it)."""

    concurrency: list[int]
    window: int = 1
    duration: float = 10.0
    warmup: float = 1.0
    backends: list[str] = field(default_factory=lambda: ["embedded", "rabbitmq-pg"])
    peers: list[str] = field(default_factory=lambda: ["echo", "python-hl7", "medplum"])
    scenarios: list[str] = field(default_factory=lambda: ["ingest", "e2e", "backlog", "soak"])
    ingest_only: bool = True  # also measure `--role ingest` alone where the bus allows it
    e2e_count: int = 10000  # long enough for a sustained rate, first send to last commit
    e2e_connections: int = 16
    e2e_rate: float | None = None
    paced_count: int = 5000  # a second end-to-end run at the offered rate
    paced_rate: float | None = 1000.0
    scale_out: bool = True  # also run e2e with the roles split over processes (rabbitmq-pg)
    backlog: int = 5000
    backlog_connections: int = 16
    soak: int = 10000
    soak_connections: int = 4
    repeat: int = 1  # runs per ingest point; figures are the median of the runs
    settle_timeout: float = 300.0
    seed: int = 20250310
    patients: int = 5000
    templates: int = 3000
    soak_idle: float = 0.5  # seconds the engine idles before the first RSS sample
    soak_drain: float = 60.0  # seconds to wait for the backlog after the soak before the last sample
    quiet_wait: float = 60.0  # seconds to wait, before each measurement, for others' work to stop
    work_dir: Path = Path("/tmp")


@dataclass
class Point:
    """One target at one concurrency."""

    rate: float
    p50: float
    p99: float
    sent: int
    acked: int
    errors: int
    error_samples: list[str]
    server_cpu: float  # cores used by the server process over the run
    client_cpu: float  # cores used by this (load generator) process over the run
    services_cpu: float = 0.0  # cores used by PostgreSQL and RabbitMQ
    other_cpu: float = 0.0  # cores used by anything else on the machine: disturbance
    runs: int = 1


def median_point(points: list[Point]) -> Point:
    """Each figure the median of `points` (one run: that run); errors and counts added up."""
    if len(points) == 1:
        return points[0]

    med = statistics.median
    return Point(
        rate=med([p.rate for p in points]),
        p50=med([p.p50 for p in points]),
        p99=med([p.p99 for p in points]),
        sent=sum(p.sent for p in points),
        acked=sum(p.acked for p in points),
        errors=sum(p.errors for p in points),
        error_samples=[s for p in points for s in p.error_samples][:5],
        server_cpu=med([p.server_cpu for p in points]),
        client_cpu=med([p.client_cpu for p in points]),
        services_cpu=med([p.services_cpu for p in points]),
        other_cpu=med([p.other_cpu for p in points]),
        runs=len(points),
    )


@dataclass
class IngestRow:
    """One target (an engine variant or a peer) across the concurrencies."""

    label: str
    kind: str  # "engine" or "peer"
    points: dict[int, Point] = field(default_factory=dict)
    note: str = ""


@dataclass
class E2EResult:
    backend: str
    count: int
    connections: int
    rate_limit: float | None
    ack_rate: float
    ack_p50: float
    errors: int
    e2e_rate: float  # messages delivered / (last store commit − first send)
    p50: float
    p99: float
    worst: float
    to_journal_p50: float  # send → journal received_at
    journal_to_store_p50: float  # journal received_at → stored_at
    measured: int  # messages whose stored_at the store still shows (a later upsert may overwrite)
    settled: bool
    statuses: dict[str, int]
    other_cpu: float = 0.0
    ack_p99: float = 0.0
    layout: str = "a"  # key of the layout in LAYOUTS
    processes: str = "all roles"  # the engine processes, as `Layout.describe` says
    delivered: int = 0  # messages whose deliveries the journal shows done
    span: float = 0.0  # seconds from the first send to the last store commit
    server_cpu: float = 0.0  # cores used by all engine processes together
    services_cpu: float = 0.0
    generator_cpu: float = 0.0
    cpu_us: dict[str, float] = field(default_factory=dict)  # process → CPU µs per message sent


@dataclass
class BacklogResult:
    backend: str
    count: int
    fill_rate: float
    fill_errors: int
    journaled: int
    startup: float  # seconds until the draining engine said it runs
    drain: float  # engine start → last delivery marked done
    drain_rate: float  # messages / (last − first stored_at)
    settled: bool
    statuses: dict[str, int]
    other_cpu: float = 0.0


@dataclass
class SoakResult:
    backend: str
    count: int
    connections: int
    rate: float
    p50: float
    p99: float
    errors: int
    rss_start: int  # KiB, engine idle after start
    rss_middle: int
    rss_end: int
    drift_pct: float  # middle → end
    growth_pct: float  # start → end
    backlog_middle: int  # journaled but not yet delivered, at the middle
    backlog_end: int
    samples: list[tuple[int, int]]  # (ACKs so far, RSS KiB)
    other_cpu: float = 0.0
    rss_drained: int = 0  # KiB, after waiting up to `soak_drain` seconds for the backlog
    backlog_drained: int = 0  # what was still undelivered then
    drain_wait: float = 0.0


def _point(result: LoadResult, cpu: CpuShare) -> Point:
    ordered = sorted(result.latencies)
    return Point(
        rate=result.rate,
        p50=percentile(ordered, 50),
        p99=percentile(ordered, 99),
        sent=result.sent,
        acked=result.acked,
        errors=result.errors,
        error_samples=list(result.error_samples),
        server_cpu=cpu.server,
        client_cpu=cpu.generator,
        services_cpu=cpu.services,
        other_cpu=cpu.other,
    )


def _measure(
    port: int, pid: int, factory: MessageFactory, plan: Plan, target: str, connections: int
) -> Point:
    meter = CpuMeter(pid).start()
    result = run_async(
        run_load(
            "127.0.0.1",
            port,
            factory,
            target=target,
            connections=connections,
            window=plan.window,
            duration=plan.duration,
            warmup=plan.warmup,
        )
    )
    return _point(result, meter.stop())


def _e2e_result(
    backend: str,
    count: int,
    rate: float | None,
    layout: Layout,
    result: LoadResult,
    stored: dict[str, float],
    journal: dict[str, tuple[float, float | None]],
) -> E2EResult:
    """Latencies per stored message; the rate from the first send to the last store commit."""
    e2e, to_journal, after_journal = [], [], []
    for control, stored_at in stored.items():
        sent = result.send_wall(control)
        if sent is None:
            continue
        e2e.append(stored_at - sent)
        if control in journal:
            to_journal.append(journal[control][0] - sent)
            after_journal.append(stored_at - journal[control][0])
    delivered = sum(1 for _, d in journal.values() if d is not None)
    span = max(stored.values()) - result.started_wall if stored else 0.0
    e2e.sort()
    return E2EResult(
        backend=backend,
        count=count,
        connections=result.connections,
        rate_limit=rate,
        ack_rate=result.rate,
        ack_p50=result.percentile(50),
        ack_p99=result.percentile(99),
        errors=result.errors,
        e2e_rate=delivered / span if span > 0 else 0.0,
        p50=percentile(e2e, 50),
        p99=percentile(e2e, 99),
        worst=e2e[-1] if e2e else 0.0,
        to_journal_p50=percentile(sorted(to_journal), 50),
        journal_to_store_p50=percentile(sorted(after_journal), 50),
        measured=len(e2e),
        settled=False,
        statuses={},
        layout=layout.key,
        processes=layout.describe(),
        delivered=delivered,
        span=span,
    )


class Runner:
    """Runs a plan's scenarios; `say` prints progress lines as they happen."""

    def __init__(self, plan: Plan, say: Callable[[str], None]) -> None:
        self.plan = plan
        self.say = say
        self.factory = MessageFactory("B0", seed=plan.seed, patients=plan.patients, templates=plan.templates)
        self._runs = 0
        self.notes: list[str] = []
        self.failures: list[str] = []  # runs that failed while the rest of their scenario went on
        self.waited = 0.0  # seconds spent waiting for a quiet machine
        self.services_missing = services_up() if "rabbitmq-pg" in plan.backends else ""

    def fresh(self) -> MessageFactory:
        """The traffic under a run id of its own, so no control id is ever seen twice."""
        self._runs += 1
        stamp = f"{int(time.time()) % 100000:05d}"
        return self.factory.fork(f"B{stamp}R{self._runs:03d}")

    def quiet(self) -> None:
        """Before a measurement: let other work on the machine finish (bounded)."""
        if self.plan.quiet_wait > 0:
            waited = wait_for_quiet(self.plan.quiet_wait)
            if waited:
                self.waited += waited
                self.say(f"(waited {waited:.0f} s for other work on the machine to stop)")

    def _skip_backend(self, backend: str) -> bool:
        if backend == "rabbitmq-pg" and self.services_missing:
            note = f"rabbitmq-pg skipped: {self.services_missing} not reachable"
            if note not in self.notes:
                self.notes.append(note)
                self.say(note)
            return True
        return False

    # -- ingest --------------------------------------------------------------------------

    def ingest(self) -> list[IngestRow]:
        rows: list[IngestRow] = []
        for backend in self.plan.backends:
            if self._skip_backend(backend):
                continue
            variants: list[tuple[str, tuple[str, ...]]] = [("all roles", ())]
            if self.plan.ingest_only and backend != "embedded":
                variants.append(("--role ingest", ("ingest",)))
            for name, roles in variants:
                row = IngestRow(f"engine {backend}, {name}", "engine")
                for c in self.plan.concurrency:
                    runs = []
                    for _ in range(self.plan.repeat):
                        with Stack(backend, self.plan.work_dir) as stack:
                            engine = stack.engine(roles)
                            self.quiet()
                            runs.append(
                                _measure(stack.port, engine.pid, self.fresh(), self.plan, row.label, c)
                            )
                        self.say(_line(row.label, c, runs[-1]))
                    row.points[c] = median_point(runs)
                rows.append(row)
        for peer_name in self.plan.peers:
            peer_row = self._peer_row(peer_name)
            if peer_row is not None:
                rows.append(peer_row)
        return rows

    def _peer_row(self, name: str) -> IngestRow | None:
        label = f"peer {name}"
        if name == "medplum":
            why = medplum_available()
            if why:
                self.notes.append(f"peer medplum skipped: {why}")
                self.say(self.notes[-1])
                return None
            if self.plan.window > 1:
                self.notes.append(
                    "peer medplum skipped: its Hl7Connection treats a socket read that ends in "
                    "0x1C 0x0D as one message, so pipelined frames (window > 1) arrive glued together"
                )
                self.say(self.notes[-1])
                return None
            install_log: list[str] = []
            install_medplum(install_log)
            for line in install_log:
                self.say(f"installed the Node peer: {line}")
        port = free_port()
        log = self.plan.work_dir / f"peer-{name}.log"
        peer: PeerProcess = medplum_peer(port, log) if name == "medplum" else python_peer(name, port, log)
        row = IngestRow(label, "peer")
        peer.start()
        try:
            assert peer.proc is not None
            for c in self.plan.concurrency:
                runs = []
                for _ in range(self.plan.repeat):
                    self.quiet()
                    runs.append(_measure(port, peer.proc.pid, self.fresh(), self.plan, label, c))
                    self.say(_line(label, c, runs[-1]))
                row.points[c] = median_point(runs)
        finally:
            peer.stop()
        return row

    # -- end to end ----------------------------------------------------------------------

    def e2e(self) -> list[E2EResult]:
        out = []
        plan = self.plan
        for backend in plan.backends:
            if self._skip_backend(backend):
                continue
            runs = [(plan.e2e_count, plan.e2e_rate, layout) for layout in self._layouts(backend)]
            if plan.paced_rate and plan.paced_count:
                # As shipped, and (on a broker) with the roles split: ingest then has its process.
                layouts = self._layouts(backend)
                runs += [
                    (plan.paced_count, plan.paced_rate, x) for x in dict.fromkeys((layouts[0], layouts[-1]))
                ]
            for count, rate, layout in runs:
                try:
                    out.append(self._e2e_run(backend, count, rate, layout))
                except Exception as exc:  # one layout that fails to start costs only its row
                    self.failures.append(f"e2e {backend} {layout.label}: {type(exc).__name__}: {exc}")
                    self.say(f"e2e {backend} {layout.label} failed: {exc}")
        return out

    def _layouts(self, backend: str) -> tuple[Layout, ...]:
        """All roles in one process; on a broker that allows it, the split layouts too."""
        if backend == "embedded" or not self.plan.scale_out:
            return LAYOUTS[:1]
        return LAYOUTS

    def _start(self, stack: Stack, layout: Layout) -> list[EngineProcess]:
        """The layout's processes, deliver first so that nothing waits for a consumer."""
        ordered = sorted(layout.processes, key=lambda r: "ingest" in r.roles or not r.roles)
        return [stack.engine(r.roles, r.partitions, r.shard) for r in ordered]

    def _e2e_run(self, backend: str, count: int, rate: float | None, layout: Layout) -> E2EResult:
        plan = self.plan
        with Stack(backend, plan.work_dir) as stack:
            engines = self._start(stack, layout)
            self.quiet()
            meter = CpuMeter(*(e.pid for e in engines)).start()
            result = run_async(
                run_load(
                    "127.0.0.1",
                    stack.port,
                    self.fresh(),
                    target=f"engine {backend}",
                    connections=plan.e2e_connections,
                    window=plan.window,
                    count=count,
                    rate=rate,
                    record_sends=True,
                )
            )
            settled, statuses = stack.wait_settled(result.acked, plan.settle_timeout)
            by_pid, services = meter.seconds_by_pid(), meter.services_seconds()
            by_process = {e.describe(): by_pid.get(e.pid, 0.0) for e in engines}
            cpu = meter.stop()
            stored = stack.stored_times()
            journal = stack.journal_times()
        r = _e2e_result(backend, count, rate, layout, result, stored, journal)
        r.settled, r.statuses = settled, statuses
        per_message = 1e6 / max(1, result.acked)
        r.cpu_us = {name: seconds * per_message for name, seconds in by_process.items()}
        r.cpu_us["PostgreSQL + RabbitMQ" if backend != "embedded" else "services"] = services * per_message
        r.server_cpu, r.services_cpu, r.generator_cpu, r.other_cpu = (
            cpu.server,
            cpu.services,
            cpu.generator,
            cpu.other,
        )
        pace = f"paced at {rate:,.0f} msg/s" if rate else "unpaced"
        self.say(
            f"e2e {backend} {layout.label} ({pace}): {r.e2e_rate:,.0f} msg/s end to end over {r.span:.1f} s "
            f"(ACKs {r.ack_rate:,.0f} msg/s, p50 {_ms(r.ack_p50)} p99 {_ms(r.ack_p99)}), latency "
            f"p50 {_ms(r.p50)} p99 {_ms(r.p99)} over {r.measured:,} stored messages; CPU engine "
            f"{cpu.server:.2f} services {cpu.services:.2f} generator {cpu.generator:.2f} "
            f"other {cpu.other:.2f}"
            + ("" if settled else f" — NOT settled within {plan.settle_timeout:.0f} s: {statuses}")
        )
        return r

    # -- backlog -------------------------------------------------------------------------

    def backlog(self) -> list[BacklogResult]:
        out = []
        plan = self.plan
        for backend in plan.backends:
            if self._skip_backend(backend):
                continue
            with Stack(backend, plan.work_dir) as stack:
                # On memory:// too, an ingest-only engine journals and leaves the messages
                # `received` until the next full start, which processes them.
                ingest = stack.engine(("ingest",))
                self.quiet()
                meter = CpuMeter(ingest.pid).start()
                fill = run_async(
                    run_load(
                        "127.0.0.1",
                        stack.port,
                        self.fresh(),
                        target=f"engine {backend} ingest",
                        connections=plan.backlog_connections,
                        window=plan.window,
                        count=plan.backlog,
                    )
                )
                meter.settle(ingest.pid)
                ingest.stop()
                journaled = stack.progress().get("received", 0)
                started = time.time()
                drainer: EngineProcess = stack.engine()
                meter.track(drainer.pid)
                startup = time.time() - started
                settled, statuses = stack.wait_settled(fill.acked, plan.settle_timeout)
                cpu = meter.stop()
                journal = stack.journal_times()
                stored = sorted(stack.stored_times().values())
            delivered = [d for _, d in journal.values() if d is not None]
            drain = (max(delivered) - drainer.started_wall) if delivered else 0.0
            span = stored[-1] - stored[0] if len(stored) > 1 else 0.0
            r = BacklogResult(
                backend=backend,
                count=plan.backlog,
                fill_rate=fill.rate,
                fill_errors=fill.errors,
                journaled=journaled,
                startup=startup,
                drain=drain,
                drain_rate=len(delivered) / span if span > 0 else 0.0,
                settled=settled,
                statuses=statuses,
                other_cpu=cpu.other,
            )
            self.say(
                f"backlog {backend}: {journaled:,} journaled at {r.fill_rate:,.0f} msg/s, drained in "
                f"{r.drain:.1f} s ({r.drain_rate:,.0f} msg/s)"
                + ("" if settled else f" — NOT settled within {plan.settle_timeout:.0f} s: {statuses}")
            )
            out.append(r)
        return out

    # -- soak ----------------------------------------------------------------------------

    def soak(self) -> list[SoakResult]:
        return [self._soak_run(b) for b in self.plan.backends if not self._skip_backend(b)]

    def _soak_run(self, backend: str) -> SoakResult:
        plan = self.plan
        half = plan.soak // 2
        middle: dict[str, int] = {}
        with Stack(backend, plan.work_dir) as stack:
            engine = stack.engine()
            time.sleep(plan.soak_idle)  # let start-up allocations settle before the first sample
            self.quiet()
            rss_start = engine.rss_kib()
            samples: list[tuple[int, int]] = [(0, rss_start)]

            def sample(acked: int) -> None:
                samples.append((acked, engine.rss_kib()))
                if not middle and acked >= half:
                    middle["rss"] = samples[-1][1]
                    middle["backlog"] = _backlog(stack)

            meter = CpuMeter(engine.pid).start()
            result = run_async(
                run_load(
                    "127.0.0.1",
                    stack.port,
                    self.fresh(),
                    target=f"engine {backend}",
                    connections=plan.soak_connections,
                    window=plan.window,
                    count=plan.soak,
                    progress=sample,
                    progress_every=max(1, min(1000, plan.soak // 20)),
                )
            )
            cpu = meter.stop()
            rss_end = engine.rss_kib()
            samples.append((result.acked, rss_end))
            backlog_end = _backlog(stack)
            waited = time.monotonic()
            stack.wait_settled(result.acked, plan.soak_drain, poll=0.5)
            waited = time.monotonic() - waited
            rss_drained, backlog_drained = engine.rss_kib(), _backlog(stack)
        rss_middle = middle.get("rss", rss_end)
        r = SoakResult(
            backend=backend,
            count=plan.soak,
            connections=plan.soak_connections,
            rate=result.rate,
            p50=result.percentile(50),
            p99=result.percentile(99),
            errors=result.errors,
            rss_start=rss_start,
            rss_middle=rss_middle,
            rss_end=rss_end,
            drift_pct=(rss_end - rss_middle) / rss_middle * 100 if rss_middle else 0.0,
            growth_pct=(rss_end - rss_start) / rss_start * 100 if rss_start else 0.0,
            backlog_middle=middle.get("backlog", 0),
            backlog_end=backlog_end,
            samples=samples,
            other_cpu=cpu.other,
            rss_drained=rss_drained,
            backlog_drained=backlog_drained,
            drain_wait=waited,
        )
        self.say(
            f"soak {backend}: {result.acked:,} messages at {r.rate:,.0f} msg/s, RSS "
            f"{_mib(r.rss_start)} → {_mib(r.rss_middle)} → {_mib(r.rss_end)} "
            f"(drift {r.drift_pct:+.1f}% middle→end), backlog at end {backlog_end:,}; "
            f"{waited:.0f} s later {_mib(rss_drained)} with {backlog_drained:,} left"
        )
        return r


def _backlog(stack: Stack) -> int:
    p = stack.progress()
    return p.get("received", 0) + p.get("undelivered", 0)


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.0f} MiB"


def _line(label: str, c: int, p: Point) -> str:
    err = f", {p.errors} errors" if p.errors else ""
    return (
        f"{label:<36} C={c:<3} {p.rate:>9,.0f} msg/s  p50 {p.p50 * 1000:8.2f} ms  p99 {p.p99 * 1000:8.2f} ms"
        f"  CPU server {p.server_cpu:.2f} services {p.services_cpu:.2f} generator {p.client_cpu:.2f}"
        f" other {p.other_cpu:.2f}{err}"
    )
