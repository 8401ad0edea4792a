"""Figures as Markdown: printed at the end of a run and written to docs/benchmarks.md.

The page carries the exact command, the date, the machine and the engine's git
revision, because the figures mean nothing without them; ratios are against peers
measured in the same command, never against numbers from another day or machine.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.load import loop_name
from bench.peers import medplum_version
from bench.scenarios import LAYOUTS, BacklogResult, E2EResult, IngestRow, Plan, SoakResult
from bench.stack import BACKENDS, PARTITIONS, REPO


@dataclass
class Results:
    plan: Plan
    command: str
    traffic: str
    started: datetime
    seconds: float = 0.0
    ingest: list[IngestRow] = field(default_factory=list)
    e2e: list[E2EResult] = field(default_factory=list)
    backlog: list[BacklogResult] = field(default_factory=list)
    soak: list[SoakResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    load_before: str = ""
    waited: float = 0.0  # seconds spent waiting for a quiet machine before measurements


DISTURBED = 0.25
"""Cores used by unrelated processes above which a measurement is flagged as disturbed."""


def load_average() -> str:
    """The 1/5/15-minute load averages: other work on the machine skews every figure."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "?"


def machine() -> dict[str, str]:
    """What the figures were measured on (read-only look-ups)."""
    cpu = ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
            mem = f"{kib / 1024 / 1024:.1f} GiB RAM"
    except (OSError, StopIteration, ValueError):
        pass
    node = ""
    if shutil.which("node"):
        node = _run(["node", "--version"])
    try:
        import hl7

        hl7_version = getattr(hl7, "__version__", "?")
    except ImportError:
        hl7_version = "not installed"
    return {
        "nproc": _run(["nproc"]) or str(os.cpu_count()),
        "cpu": cpu or platform.processor() or "?",
        "memory": mem,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loop": loop_name(),
        "node": node or "not installed",
        "revision": _run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO) or "unknown",
        "python_hl7": hl7_version,
        "medplum": medplum_version(),
    }


def _run(argv: list[str], cwd: Path | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=cwd, check=False)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def _ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.2f}" if ms < 10 else f"{ms:,.1f}" if ms < 1000 else f"{ms:,.0f}"


def _dur(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def _ratio(x: float) -> str:
    return f"{x:.2f}×" if x >= 0.1 else f"{x:.3f}×"


def _mib(kib: int) -> str:
    return f"{kib / 1024:,.1f}"


def _short(label: str) -> str:
    """`engine rabbitmq-pg, --role ingest` → `rabbitmq-pg ingest` for column heads."""
    name = label.removeprefix("engine ")
    return name.replace(", all roles", "").replace(", --role ingest", " (ingest role)")


def ingest_table(rows: list[IngestRow], concurrency: list[int]) -> list[str]:
    engines = [r for r in rows if r.kind == "engine"]
    heads = [
        "target",
        "C",
        "msg/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "CPU server",
        "services",
        "generator",
        "other",
    ]
    heads += [f"{_short(e.label)} ÷ target" for e in engines]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(["---"] * 2 + ["---:"] * (len(heads) - 2)) + "|"]
    for row in rows:
        for c in concurrency:
            p = row.points.get(c)
            if p is None:
                continue
            cells = [
                row.label,
                str(c),
                f"{p.rate:,.0f}",
                _ms(p.p50),
                _ms(p.p99),
                f"{p.errors:,}",
                f"{p.server_cpu:.2f}",
                f"{p.services_cpu:.2f}",
                f"{p.client_cpu:.2f}",
                f"{p.other_cpu:.2f}",
            ]
            for e in engines:
                mine = e.points.get(c)
                if row.kind == "engine" or mine is None or p.rate <= 0:
                    cells.append("—")
                else:
                    cells.append(_ratio(mine.rate / p.rate))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def e2e_base(results: list[E2EResult], r: E2EResult) -> E2EResult | None:
    """The all-roles run a split layout is compared with: same backend, same pace."""
    return next(
        (
            x
            for x in results
            if x.backend == r.backend and x.rate_limit == r.rate_limit and x.layout == LAYOUTS[0].key
        ),
        None,
    )


def _vs_base(results: list[E2EResult], r: E2EResult) -> str:
    base = e2e_base(results, r)
    if r.layout == LAYOUTS[0].key or base is None or base.e2e_rate <= 0:
        return "—"
    return _ratio(r.e2e_rate / base.e2e_rate)


def e2e_table(results: list[E2EResult]) -> list[str]:
    labels = {x.key: x.label for x in LAYOUTS}
    lines = [
        "| backend | engine processes | sent at | messages | C | ACK msg/s | ACK p50 ms | ACK p99 ms "
        "| end-to-end msg/s | ÷ (a) | e2e p50 | e2e p99 | e2e max | send → journal p50 "
        "| journal → store p50 | errors | settled | CPU engine | services | generator | other |",
        "|---|---|---|" + "---:|" * 13 + "---|" + "---:|" * 4,
    ]
    for r in results:
        pace = f"{r.rate_limit:,.0f} msg/s" if r.rate_limit else "full speed"
        lines.append(
            f"| {BACKENDS[r.backend]} | {labels.get(r.layout, r.processes)} | {pace} | {r.count:,} "
            f"| {r.connections} | {r.ack_rate:,.0f} | {_ms(r.ack_p50)} | {_ms(r.ack_p99)} "
            f"| {r.e2e_rate:,.0f} | {_vs_base(results, r)} "
            f"| {_dur(r.p50)} | {_dur(r.p99)} | {_dur(r.worst)} | {_dur(r.to_journal_p50)} "
            f"| {_dur(r.journal_to_store_p50)} | {r.errors:,} | {'yes' if r.settled else 'NO'} "
            f"| {r.server_cpu:.2f} | {r.services_cpu:.2f} | {r.generator_cpu:.2f} | {r.other_cpu:.2f} |"
        )
    return lines


def e2e_cpu(results: list[E2EResult]) -> list[str]:
    """Where the CPU goes, per process: the profile that says what limits the rate."""
    runs = [r for r in results if r.cpu_us and not r.rate_limit]
    if not runs:
        return []
    labels = {x.key: x.label for x in LAYOUTS}
    lines = [
        "CPU µs per message by process (full-speed runs; CPU seconds over the run divided by the "
        "messages sent; on 2 cores, 2,000 msg/s end to end leaves 1,000 µs per message for "
        "everything, engine, database, broker and load generator together):",
        "",
        "| backend | engine processes | CPU µs per message, by process | engine total |",
        "|---|---|---|---:|",
    ]
    for r in runs:
        engine = {k: v for k, v in r.cpu_us.items() if k not in ("PostgreSQL + RabbitMQ", "services")}
        parts = "; ".join(f"{k} {v:,.0f}" for k, v in r.cpu_us.items())
        lines.append(
            f"| {BACKENDS[r.backend]} | {labels.get(r.layout, r.processes)} | {parts} "
            f"| {sum(engine.values()):,.0f} |"
        )
    lines.append("")
    return lines


def e2e_layouts(results: list[E2EResult]) -> list[str]:
    """What (a), (b) and (c) are, when the split layouts ran."""
    if not any(r.layout != LAYOUTS[0].key for r in results):
        return []
    lines = [
        "On RabbitMQ + PostgreSQL the full-speed run is repeated with the roles split over processes "
        f"(the store's {PARTITIONS} partitions shared between the deliver processes); `÷ (a)` is the "
        "end-to-end rate over the all-roles run's:",
        "",
    ]
    for layout in LAYOUTS:
        argv = " + ".join(
            "`mch-engine run"
            + "".join(f" --role {role}" for role in proc.roles)
            + (f" --partitions {proc.partitions}" if proc.partitions else "")
            + (f" --shard {proc.shard}" if proc.shard else "")
            + "`"
            for proc in layout.processes
        )
        lines.append(f"- {layout.label}: {argv}")
    lines.append("")
    return lines


def backlog_table(results: list[BacklogResult]) -> list[str]:
    lines = [
        "| backend | messages | journaled (ingest role) at | errors | engine start | time to drain "
        "| drain msg/s | settled | other CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        lines.append(
            f"| {BACKENDS[r.backend]} | {r.journaled:,} | {r.fill_rate:,.0f} msg/s | {r.fill_errors:,} "
            f"| {_dur(r.startup)} "
            f"| {_dur(r.drain)} | {r.drain_rate:,.0f} | {'yes' if r.settled else 'NO'} | {r.other_cpu:.2f} |"
        )
    return lines


def soak_table(results: list[SoakResult]) -> list[str]:
    lines = [
        "| backend | messages | C | msg/s | p50 ms | p99 ms | errors | RSS start MiB | RSS middle MiB "
        "| RSS end MiB | drift middle→end | growth start→end | backlog middle | backlog end "
        "| RSS after the wait MiB | backlog after the wait | other CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {BACKENDS[r.backend]} | {r.count:,} | {r.connections} | {r.rate:,.0f} | {_ms(r.p50)} "
            f"| {_ms(r.p99)} | {r.errors:,} | {_mib(r.rss_start)} | {_mib(r.rss_middle)} | {_mib(r.rss_end)} "
            f"| {r.drift_pct:+.1f}% | {r.growth_pct:+.1f}% | {r.backlog_middle:,} | {r.backlog_end:,} "
            f"| {_mib(r.rss_drained)} ({r.drain_wait:.0f} s) | {r.backlog_drained:,} | {r.other_cpu:.2f} |"
        )
    return lines


def rss_series(r: SoakResult, points: int = 11) -> str:
    if len(r.samples) <= points:
        chosen = r.samples
    else:
        step = (len(r.samples) - 1) / (points - 1)
        chosen = [r.samples[round(i * step)] for i in range(points)]
    return ", ".join(f"{n:,}: {_mib(kib)}" for n, kib in chosen)


def summary(results: Results) -> list[str]:
    """The few figures a reader wants first, computed from the tables below."""
    lines: list[str] = []
    engines = [r for r in results.ingest if r.kind == "engine"]
    peers = [r for r in results.ingest if r.kind == "peer"]
    for e in engines:
        for c in sorted(e.points):
            p = e.points[c]
            ratios = [
                f"{_ratio(p.rate / peer.points[c].rate)} {peer.label.removeprefix('peer ')}"
                for peer in peers
                if c in peer.points and peer.points[c].rate > 0
            ]
            vs = f" ({', '.join(ratios)})" if ratios else ""
            lines.append(
                f"- ingest, {_short(e.label)}, C={c}: {p.rate:,.0f} msg/s, ACK p50 {_ms(p.p50)} ms / "
                f"p99 {_ms(p.p99)} ms{vs}"
            )
    labels = {x.key: x.label for x in LAYOUTS}
    for r in results.e2e:
        pace = f"paced at {r.rate_limit:,.0f} msg/s" if r.rate_limit else "full speed"
        layout = f", {labels[r.layout]}" if r.backend != "embedded" and r.layout in labels else ""
        lines.append(
            f"- end to end, {r.backend}{layout}, {pace}: {r.e2e_rate:,.0f} msg/s into the store "
            f"(ACKs p50 {_ms(r.ack_p50)} / p99 {_ms(r.ack_p99)} ms), send → stored p50 {_dur(r.p50)} / "
            f"p99 {_dur(r.p99)}"
        )
    for b in results.backlog:
        lines.append(f"- backlog, {b.backend}: {b.journaled:,} messages drained in {_dur(b.drain)}")
    for k in results.soak:
        lines.append(
            f"- soak, {k.backend}: {k.count:,} messages, RSS {_mib(k.rss_start)} → {_mib(k.rss_middle)} → "
            f"{_mib(k.rss_end)} MiB (drift {k.drift_pct:+.1f}% middle → end; {k.backlog_end:,} not yet "
            "delivered at the end)"
        )
    return lines


ISSUE_BACKLOG = 100_000
ISSUE_SOAK = 1_000_000
ISSUE_PACE = 1000.0
TARGET_C = 16
RISE = 1.05
"""A second deliver process "raises" the rate when it adds at least 5 % (beyond run-to-run noise)."""


@dataclass(frozen=True)
class Target:
    """One target of the issue: what this run measured for it, and whether it is met."""

    measured: str  # e.g. "ingest rabbitmq-pg (--role ingest) C=16 ÷ medplum C=16 = 0.8×"
    goal: str  # e.g. "≥ 1.0×"
    verdict: str  # "met", "not met", "not measured: …", "not run at the issue's size (N)"

    def line(self) -> str:
        return f"- {self.measured} (target {self.goal}): {self.verdict}"


def _met(ok: bool, *others: float) -> str:
    """The verdict, flagged when other work on the machine took CPU from the measurement."""
    verdict = "met" if ok else "not met"
    worst = max(others, default=0.0)
    if worst >= DISTURBED:
        verdict += f" (disturbed: other processes used {worst:.2f} core meanwhile)"
    return verdict


def _row(results: Results, label: str) -> IngestRow | None:
    return next((r for r in results.ingest if r.label == label), None)


def _ingest_vs_medplum(results: Results, backend: str, variant: str) -> Target:
    """Durable ingest at C=16 against the medplum server's parse-and-ACK rate in the same run."""
    label = f"engine {backend}, {variant}"
    measured = f"ingest {backend} ({variant}) C={TARGET_C} ÷ medplum C={TARGET_C}"
    engine, medplum = _row(results, label), _row(results, "peer medplum")
    mine = engine.points.get(TARGET_C) if engine else None
    theirs = medplum.points.get(TARGET_C) if medplum else None
    if mine is None or theirs is None or theirs.rate <= 0:
        missing = "the engine row" if mine is None else "the medplum peer"
        return Target(measured, "≥ 1.0×", f"not measured ({missing} at C={TARGET_C} is not in this run)")
    ratio = mine.rate / theirs.rate
    return Target(
        f"{measured} = {_ratio(ratio)} ({mine.rate:,.0f} ÷ {theirs.rate:,.0f} msg/s)",
        "≥ 1.0×",
        _met(ratio >= 1.0, mine.other_cpu, theirs.other_cpu),
    )


def _sqlite_c1(results: Results) -> Target:
    measured = "ingest embedded (all roles) C=1 ACK p50"
    row = _row(results, "engine embedded, all roles")
    point = row.points.get(1) if row else None
    if point is None:
        return Target(measured, "< 1 ms", "not measured (no C=1 point on the embedded default)")
    return Target(f"{measured} = {_ms(point.p50)} ms", "< 1 ms", _met(point.p50 < 0.001, point.other_cpu))


def _e2e_sustained(results: Results) -> Target:
    """The best full-speed layout on RabbitMQ + PostgreSQL (the issue does not fix the layout)."""
    runs = [r for r in results.e2e if r.backend == "rabbitmq-pg" and not r.rate_limit]
    measured = "end to end rabbitmq-pg, full speed, first send → last store commit"
    if not runs:
        return Target(measured, "≥ 2,000 msg/s sustained", "not measured (no full-speed rabbitmq-pg run)")
    best = max(runs, key=lambda r: r.e2e_rate)
    each = ", ".join(f"({r.layout}) {r.e2e_rate:,.0f}" for r in runs)
    text = (
        f"{measured} = {best.e2e_rate:,.0f} msg/s, best of {each} msg/s "
        f"({best.delivered:,} messages over {best.span:.1f} s)"
    )
    if not best.settled:
        return Target(text, "≥ 2,000 msg/s sustained", "not met (the run did not settle)")
    return Target(text, "≥ 2,000 msg/s sustained", _met(best.e2e_rate >= 2000, best.other_cpu))


def _paced_ack(results: Results) -> list[Target]:
    runs = [r for r in results.e2e if r.rate_limit]
    if not runs:
        return [Target("ACK p99 at 1,000 msg/s offered", "< 10 ms", "not measured (no paced run)")]
    out = []
    for r in runs:
        measured = (
            f"ACK p99 {r.backend} ({r.layout}) at {r.rate_limit:,.0f} msg/s offered = {_ms(r.ack_p99)} ms "
            f"(p50 {_ms(r.ack_p50)} ms, {r.ack_rate:,.0f} msg/s achieved; end to end p99 {_dur(r.p99)})"
        )
        if r.rate_limit != ISSUE_PACE:
            out.append(
                Target(measured, "< 10 ms at 1,000 msg/s", f"not run at the issue's rate ({ISSUE_PACE:,.0f})")
            )
        else:
            out.append(Target(measured, "< 10 ms", _met(r.ack_p99 < 0.010 and r.errors == 0, r.other_cpu)))
    return out


def _backlog_targets(results: Results) -> list[Target]:
    out = []
    for b in results.backlog:
        measured = f"backlog {b.backend}: {b.journaled:,} drained into the store in {_dur(b.drain)}"
        goal = f"{ISSUE_BACKLOG:,} in < 60 s"
        if b.count < ISSUE_BACKLOG:
            out.append(Target(measured, goal, f"not run at the issue's size ({b.count:,})"))
        else:
            out.append(Target(measured, goal, _met(b.settled and b.drain < 60.0, b.other_cpu)))
    return out


def _soak_targets(results: Results) -> list[Target]:
    out = []
    for k in results.soak:
        measured = (
            f"soak {k.backend}: RSS {_mib(k.rss_middle)} → {_mib(k.rss_end)} MiB, drift middle → end "
            f"{k.drift_pct:+.1f}% over {k.count:,} messages"
        )
        goal = f"within 10 % over {ISSUE_SOAK:,}"
        if k.count < ISSUE_SOAK:
            out.append(Target(measured, goal, f"not run at the issue's size ({k.count:,})"))
        else:
            out.append(Target(measured, goal, _met(abs(k.drift_pct) <= 10.0 and k.errors == 0, k.other_cpu)))
    return out


def _scale_out(results: Results) -> Target:
    runs = {r.layout: r for r in results.e2e if r.backend == "rabbitmq-pg" and not r.rate_limit}
    goal = "rate rises with the second deliver process"
    one, two, base = runs.get("b"), runs.get("c"), runs.get("a")
    if one is None or two is None or one.e2e_rate <= 0:
        return Target("scale-out rabbitmq-pg (c) ÷ (b)", goal, "not measured (no split-role runs)")
    ratio = two.e2e_rate / one.e2e_rate
    vs_a = f", (c) ÷ (a) = {_ratio(two.e2e_rate / base.e2e_rate)}" if base and base.e2e_rate > 0 else ""
    sharded = runs.get("d")
    if sharded and base and base.e2e_rate > 0:
        vs_a += f", (d) with two transform processes ÷ (a) = {_ratio(sharded.e2e_rate / base.e2e_rate)}"
    measured = (
        f"scale-out rabbitmq-pg (c) ÷ (b) = {_ratio(ratio)} ({one.e2e_rate:,.0f} → {two.e2e_rate:,.0f} msg/s"
        f"{vs_a}; with (c) the engine processes used {two.server_cpu:.2f} cores, PostgreSQL and "
        f"RabbitMQ {two.services_cpu:.2f})"
    )
    return Target(measured, f"≥ {RISE:.2f}×", _met(ratio >= RISE, one.other_cpu, two.other_cpu))


def targets(results: Results) -> list[Target]:
    """Every target of the issue, in its order, judged on this run's figures."""
    out = [
        _ingest_vs_medplum(results, "rabbitmq-pg", "--role ingest"),
        _ingest_vs_medplum(results, "embedded", "all roles"),
        _e2e_sustained(results),
        *_paced_ack(results),
        _sqlite_c1(results),
        *_backlog_targets(results),
        *_soak_targets(results),
        _scale_out(results),
    ]
    return out


def targets_section(results: Results) -> list[str]:
    return [
        "## Targets",
        "",
        "Each target of the benchmark issue, the figure this run measured for it, and whether it is "
        "met. Durable ingest on PostgreSQL is judged on the `--role ingest` engine (journal only, as a "
        "site runs its ingest processes), on the embedded default on the all-roles engine (it cannot "
        "split its bus). Backlog and soak are judged only at the issue's sizes (`--full`).",
        "",
        *(t.line() for t in targets(results)),
        "",
    ]


def how_to_run() -> list[str]:
    return [
        "## How to run",
        "",
        "- `make bench` (`.venv/bin/python -m bench`, flags in `BENCH_ARGS`): this page, in about "
        "10 minutes on 2 cores. RabbitMQ and PostgreSQL on 127.0.0.1 for the `rabbitmq-pg` rows "
        "(`MCH_BENCH_AMQP_URL`, `MCH_BENCH_PG_URL`, else `MCH_TEST_AMQP_URL`, `MCH_TEST_PG_URL`); "
        "without them those rows are left out and said so. Node and npm for the medplum peer (the "
        "bench runs `npm install --prefix bench/peers/medplum` once).",
        "- `python -m bench --smoke`: seconds; checks the harness end to end on the embedded default "
        "and writes nothing (`tests/unit/bench/test_bench_smoke.py` runs it).",
        "- `python -m bench --full`: the issue's sizes, backlog 100,000 and soak 1,000,000 — hours at "
        "the rates below; only such a run judges the backlog and soak targets.",
        "- Knobs: `--concurrency 1,4,16`, `--window W` (pipelined frames per connection), "
        "`--duration`, `--warmup`, `--repeat N` (medians of N runs), `--backends`, `--peers`, "
        "`--scenarios`, `--e2e N` and `--e2e-connections C` (the sustained end-to-end run), "
        "`--paced-rate`, `--paced-count`, `--no-scale-out` (skip the split-role end-to-end runs), "
        "`--no-ingest-role`, `--backlog`, `--soak`; see `python -m bench --help`.",
        "",
    ]


def render(results: Results) -> str:
    plan = results.plan
    m = machine()
    out = [
        "# Benchmarks",
        "",
        "Generated by the benchmark harness in `bench/` — do not edit by hand; run `make bench` "
        "(`python -m bench`) to measure again. Latencies are the median (p50) and p99 of every ACK in "
        "the measured window"
        + (f"; each ingest figure is the median of {plan.repeat} runs" if plan.repeat > 1 else "")
        + ". Every ratio compares the engine with peers run **in the same command on the same "
        "machine**; figures from another machine or another day are not comparable.",
        "",
        f"- command: `{results.command}`",
        f"- date: {results.started.strftime('%Y-%m-%d %H:%M UTC')}, took {results.seconds / 60:.1f} min",
        f"- machine: nproc {m['nproc']}, {m['cpu']}, {m['memory']}, {m['os']}; load average "
        f"{results.load_before} just before the run (anything else running on the machine skews "
        "the figures: see the `other` CPU columns)"
        + (
            f"; the bench waited {results.waited:.0f} s in all for other work to stop before measuring"
            if results.waited
            else ""
        ),
        f"- Python {m['python']} ({m['loop']} event loop in the load generator and the Python peers), "
        f"Node {m['node']}",
        f"- engine: git revision `{m['revision']}`; peers: python-hl7 {m['python_hl7']}, "
        f"@medplum/hl7 {m['medplum']}",
        "- routes: the repository's routes.yaml and mappings with the bench's addresses; on RabbitMQ + "
        f"PostgreSQL `record_store` has `partitions: {PARTITIONS}` (queues by person, so that deliver "
        "processes can share it), the embedded default keeps the shipped single queue",
        f"- traffic: {results.traffic}",
        f"- senders: C connections, each in lock step (window {plan.window}: "
        + (
            "waits for each ACK before the next frame"
            if plan.window == 1
            else f"{plan.window} frames in flight"
        )
        + "); every ACK checked (MSA-1 AA/CA, MSA-2 = the control id sent); latency from the write of "
        "a frame to the arrival of its ACK",
        "",
    ]
    out += targets_section(results)
    out += how_to_run()
    others = [p.other_cpu for row in results.ingest for p in row.points.values()]
    others += [r.other_cpu for r in results.e2e]
    others += [r.other_cpu for r in results.backlog]
    others += [r.other_cpu for r in results.soak]
    disturbed = sum(1 for x in others if x >= DISTURBED)
    if disturbed:
        out += [
            f"**Warning:** other processes on the machine used at least {DISTURBED:g} core during "
            f"{disturbed} of {len(others)} measurements (the `other` CPU columns): those figures are "
            "lower than this machine can do. Measure again on a quiet machine for clean figures.",
            "",
        ]
    top = summary(results)
    if top:
        out += ["## Summary", "", *top, ""]
    if results.ingest:
        labels = {row.label for row in results.ingest}
        explain = [
            "- `engine …, all roles`: `mch-engine run` as shipped: ingest, transform and delivery in one "
            "process. An ACK means the message's bytes are committed to the journal."
        ]
        if any("--role ingest" in label for label in labels):
            explain.append(
                "- `engine rabbitmq-pg, --role ingest`: the ingest role alone (MLLP + journal), as a site "
                "runs it when it splits roles across processes; nothing transforms or delivers meanwhile."
            )
        peer_text = {
            "peer echo": "`peer echo`: raw asyncio MLLP answering a fixed ACK without parsing (MSH-10 "
            "copied by a byte slice): the ceiling of this harness.",
            "peer python-hl7": "`peer python-hl7`: decode by MSH-18, `hl7.parse`, `create_ack`.",
            "peer medplum": "`peer medplum`: @medplum/hl7 `Hl7Server` on Node, `buildAck()` per message "
            "(it decodes every frame as UTF-8 whatever MSH-18 says, so its GB18030 messages are parsed "
            "as mojibake; MSA-2 is ASCII, so its ACKs still check).",
        }
        shown = [text for label, text in peer_text.items() if label in labels]
        if shown:
            explain.append("- " + " ".join(shown) + " No peer stores anything.")
        out += [
            "## Ingest: MLLP → durable journal → ACK",
            "",
            "Each point: a fresh server process (and, for the engine, fresh stores), "
            f"{plan.warmup:g} s warm-up, then {plan.duration:g} s measured. The CPU columns are cores "
            "used over the point by the server process, by PostgreSQL and RabbitMQ, by the load "
            "generator (2 cores in all: a generator near 1.0 is the limit of this harness, not of the "
            "server) and by anything else on the machine (`other` well above 0: the point was "
            "disturbed). `X ÷ target` is the engine's msg/s divided by the target's at the same C.",
            "",
            *ingest_table(results.ingest, plan.concurrency),
            "",
            *explain,
            "",
        ]
    if results.e2e:
        out += [
            "## End to end: send → record committed in the store",
            "",
            f"Each run: fresh stores and engine processes, messages over {plan.e2e_connections} "
            f"connections: {plan.e2e_count:,} at full speed (each connection sends as soon as its ACK is "
            "back: the engine's sustained capacity, and whatever queue builds behind the ACK), then "
            + (
                f"{plan.paced_count:,} paced at {plan.paced_rate:,.0f} msg/s offered. "
                if plan.paced_rate and plan.paced_count
                else "no paced run. "
            )
            + "Latency is the store's own `stored_at` (records and persons, matched by MSH-10) minus "
            "the moment the frame was written; `send → journal` uses the journal's `received_at`. "
            "End-to-end msg/s is the messages whose deliveries the journal shows done over the time "
            "from the first send to the last commit in the store. CPU columns are cores used over the "
            "run (sending and draining) by all engine processes together, by PostgreSQL and RabbitMQ, "
            "by the load generator and by anything else.",
            "",
            *e2e_layouts(results.e2e),
            *e2e_table(results.e2e),
            "",
            *e2e_cpu(results.e2e),
        ]
    if results.backlog:
        out += [
            "## Backlog: journaled while nothing consumes, then drained",
            "",
            f"{plan.backlog:,} messages sent over {plan.backlog_connections} connections to an engine "
            "started with `--role ingest` (journal only: nothing transforms or delivers; on the "
            "embedded default the messages wait as `received`), which is then stopped; an engine with "
            "all roles is started on the same stores and processes the journal. "
            "Time to drain runs from that engine's process start to the last delivery marked done in the "
            "journal; drain msg/s is messages over the first-to-last `stored_at` span.",
            "",
            *backlog_table(results.backlog),
            "",
        ]
    if results.soak:
        out += [
            "## Soak: memory over many messages",
            "",
            f"{plan.soak:,} messages over {plan.soak_connections} connections at full speed into one engine "
            "(all roles). Its RSS (VmRSS from /proc) is sampled as ACKs come: at start (idle), at the "
            "middle and at the end of sending. Drift is middle → end, after start-up caches have "
            "warmed. The backlog (journaled, not yet delivered) is shown because a backlog is what "
            "could grow memory: the journal holds it, the engine keeps at most 5,000 messages of it "
            "in hand (40 bundles on the in-process bus); after sending, the bench waits up to "
            f"{plan.soak_drain:g} s for it to drain and samples RSS once more.",
            "",
            *soak_table(results.soak),
            "",
        ]
        for r in results.soak:
            out.append(f"- RSS MiB by ACKs, {BACKENDS[r.backend]}: {rss_series(r)}")
        out.append("")
    if results.notes or results.failures:
        out += ["## Left out or failed", ""]
        out += [f"- {n}" for n in results.notes]
        out += [f"- FAILED: {f}" for f in results.failures]
        out.append("")
    errors = [
        (row.label, c, s)
        for row in results.ingest
        for c, p in row.points.items()
        for s in p.error_samples[:2]
    ]
    if errors:
        out += ["## Error samples", ""]
        out += [f"- {label} C={c}: `{text}`" for label, c, text in errors[:20]]
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def command_line(argv: list[str]) -> str:
    """The command as a person would type it again."""
    import shlex

    exe = Path(sys.executable)
    try:
        shown = str(exe.relative_to(REPO))  # .venv/bin/python
    except ValueError:
        shown = "python"
    return " ".join([shown, "-m", "bench", *map(shlex.quote, argv)])


def started_now() -> datetime:
    return datetime.now(UTC)
