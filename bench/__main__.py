"""`python -m bench`: run the benchmarks, print the figures, write docs/benchmarks.md.

The defaults finish in about 10 minutes on a 2-core machine; `--full` uses the sizes
of the benchmark issue (backlog 100,000, soak 1,000,000), which take far longer. `--smoke`
only checks, in seconds, that the harness works end to end on the embedded default
(tiny counts, one peer) and writes nothing unless `--output` is given.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import traceback
from collections.abc import Sequence
from pathlib import Path

from bench.peers import PEER_NAMES
from bench.report import Results, command_line, load_average, render, started_now, targets
from bench.rules_bench import BEGIN as RULES_BEGIN
from bench.rules_bench import END as RULES_END
from bench.scenarios import Plan, Runner
from bench.sources import carried
from bench.stack import BACKENDS, REPO

SCENARIOS = ("ingest", "e2e", "backlog", "soak")
DEFAULT_OUTPUT = REPO / "docs" / "benchmarks.md"


def _list(kind: type, choices: Sequence[str] | None = None):  # type: ignore[no-untyped-def]
    def parse(text: str) -> list[object]:
        items = [kind(x.strip()) for x in text.split(",") if x.strip()]
        if choices is not None:
            bad = [x for x in items if x not in choices]
            if bad:
                raise argparse.ArgumentTypeError(f"unknown {bad}; choose from {', '.join(choices)}")
        if not items:
            raise argparse.ArgumentTypeError("empty list")
        return items

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Measure mch-engine against peer MLLP servers in the same run; print the figures "
        "and write docs/benchmarks.md.",
    )
    p.add_argument("--smoke", action="store_true", help="a few seconds: check the harness end to end")
    p.add_argument("--full", action="store_true", help="the issue's sizes: backlog 100,000, soak 1,000,000")
    p.add_argument(
        "--concurrency", type=_list(int), default=[1, 4, 16], help="connections per ingest point (1,4,16)"
    )
    p.add_argument("--window", type=int, default=1, help="frames in flight per connection (1 = lock step)")
    p.add_argument("--duration", type=float, default=10.0, help="measured seconds per ingest point (10)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds before each point (1)")
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per ingest point; the table shows their medians (1)"
    )
    p.add_argument(
        "--backends",
        type=_list(str, list(BACKENDS)),
        default=list(BACKENDS),
        help="embedded (SQLite + memory://), rabbitmq-pg (RabbitMQ + PostgreSQL)",
    )
    p.add_argument(
        "--peers", type=_list(str, PEER_NAMES), default=list(PEER_NAMES), help="echo,python-hl7,medplum"
    )
    p.add_argument("--no-peers", action="store_true", help="measure the engine only")
    p.add_argument(
        "--scenarios", type=_list(str, SCENARIOS), default=list(SCENARIOS), help=",".join(SCENARIOS)
    )
    p.add_argument(
        "--no-ingest-role",
        action="store_true",
        help="skip the `--role ingest` engine rows on RabbitMQ + PostgreSQL",
    )
    p.add_argument(
        "--e2e",
        type=int,
        default=10_000,
        metavar="N",
        help="messages in the sustained end-to-end run (10,000)",
    )
    p.add_argument("--e2e-connections", type=int, default=16, metavar="C", help="end-to-end connections (16)")
    p.add_argument(
        "--e2e-rate", type=float, default=None, metavar="MSG/S", help="pace the sustained run's senders"
    )
    p.add_argument(
        "--paced-rate",
        type=float,
        default=1000.0,
        metavar="MSG/S",
        help="second end-to-end run's offered rate (1,000; 0: none)",
    )
    p.add_argument(
        "--paced-count", type=int, default=5_000, metavar="N", help="messages in the paced run (5,000)"
    )
    p.add_argument(
        "--no-scale-out",
        action="store_true",
        help="skip the end-to-end runs with the roles split over processes (rabbitmq-pg)",
    )
    p.add_argument(
        "--backlog", type=int, default=None, metavar="N", help="backlog size (5,000; --full 100,000)"
    )
    p.add_argument("--backlog-connections", type=int, default=16, metavar="C")
    p.add_argument(
        "--soak", type=int, default=None, metavar="M", help="soak messages (10,000; --full 1,000,000)"
    )
    p.add_argument("--soak-connections", type=int, default=4, metavar="C")
    p.add_argument(
        "--soak-drain",
        type=float,
        default=None,
        metavar="S",
        help="seconds to wait for the soak's backlog (60)",
    )
    p.add_argument("--settle-timeout", type=float, default=None, help="seconds to wait for a drain (300)")
    p.add_argument(
        "--quiet-wait",
        type=float,
        default=60.0,
        metavar="S",
        help="before each measurement wait up to S seconds for other work on the machine to stop (60; 0: no)",
    )
    p.add_argument("--seed", type=int, default=20250310, help="seed of the message factory")
    p.add_argument("--output", type=Path, default=None, help="where to write the page (docs/benchmarks.md)")
    p.add_argument("--no-write", action="store_true", help="print only")
    return p


def plan_from(args: argparse.Namespace, work_dir: Path) -> Plan:
    if args.smoke:
        return Plan(
            concurrency=[2],
            window=args.window,
            duration=0.6,
            warmup=0.2,
            backends=["embedded"],
            peers=["echo"],
            scenarios=["ingest", "e2e", "soak"],
            ingest_only=False,
            e2e_count=30,
            e2e_connections=2,
            paced_rate=None,
            scale_out=False,
            soak=100,
            soak_idle=0.1,
            soak_drain=5.0,
            quiet_wait=0.0,
            patients=300,
            templates=300,
            soak_connections=2,
            settle_timeout=args.settle_timeout or 30.0,
            seed=args.seed,
            work_dir=work_dir,
        )
    backlog = args.backlog if args.backlog is not None else (100_000 if args.full else 5_000)
    soak = args.soak if args.soak is not None else (1_000_000 if args.full else 10_000)
    settle = args.settle_timeout if args.settle_timeout is not None else (7200.0 if args.full else 300.0)
    return Plan(
        concurrency=args.concurrency,
        window=args.window,
        duration=args.duration,
        warmup=args.warmup,
        backends=args.backends,
        peers=[] if args.no_peers else args.peers,
        scenarios=args.scenarios,
        ingest_only=not args.no_ingest_role,
        e2e_count=args.e2e,
        e2e_connections=args.e2e_connections,
        e2e_rate=args.e2e_rate,
        paced_rate=args.paced_rate or None,
        paced_count=args.paced_count,
        scale_out=not args.no_scale_out,
        backlog=backlog,
        backlog_connections=args.backlog_connections,
        soak=soak,
        soak_connections=args.soak_connections,
        soak_drain=args.soak_drain if args.soak_drain is not None else (settle if args.full else 60.0),
        repeat=max(1, args.repeat),
        quiet_wait=args.quiet_wait,
        settle_timeout=settle,
        seed=args.seed,
        work_dir=work_dir,
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.window < 1:
        print("--window must be at least 1", file=sys.stderr)
        return 2

    def say(line: str) -> None:
        print(line, flush=True)

    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mch-bench-") as tmp:
        plan = plan_from(args, Path(tmp))
        runner = Runner(plan, say)
        results = Results(
            plan=plan,
            command=command_line(argv),
            traffic=runner.factory.describe(),
            started=started_now(),
            load_before=load_average(),
        )
        say(f"mch-engine benchmarks: {', '.join(plan.scenarios)} on {', '.join(plan.backends)}")
        say(f"traffic: {results.traffic}")
        steps = {"ingest": "ingest", "e2e": "e2e", "backlog": "backlog", "soak": "soak"}
        for name in SCENARIOS:
            if name not in plan.scenarios:
                continue
            try:
                setattr(results, steps[name], getattr(runner, name)())
            except KeyboardInterrupt:
                raise
            except Exception as exc:
                results.failures.append(f"{name}: {type(exc).__name__}: {exc}")
                say(f"scenario {name} failed:\n{traceback.format_exc()}")
        results.notes = runner.notes
        results.failures += runner.failures
        results.waited = runner.waited
        results.seconds = time.monotonic() - t0
    page = render(results)
    print()
    print(page, end="")
    output = args.output or (None if args.smoke else DEFAULT_OUTPUT)
    if output is not None and not args.no_write:
        output.parent.mkdir(parents=True, exist_ok=True)
        kept = carried(output, carried(output, page), (RULES_BEGIN, RULES_END))  # the other benches' sections
        output.write_text(kept, encoding="utf-8")
        print(f"\nwritten to {output}")
    print("\ntargets (as at the top of the page):")
    for target in targets(results):
        print(target.line())
    return 1 if results.failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
