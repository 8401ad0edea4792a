"""`python -m bench.transform_bench`: CPU cost of the transform stage per message.

The engine's throughput on two shared cores is bounded by what one message costs the
transform thread, so this measures exactly that work, without broker, database or
network: `TransformWorker.transform` (decode, parse, route, map, validate) plus the
JSON encoding the bus applies to the envelopes (`engine.bus.encode` of the tree measured).
The router is built from the shipped routes.yaml the way the running engine builds it, and
the traffic is the load generator's own mix (bench/messages.py), so the figure is
comparable with `make bench`.

`--baseline DIR` runs the same measurement on another checkout of the code, each tree in a
child process of its own (so neither has the parent's heap or imports), alternating the
order of the two from round to round so both see the same machine load; the table then
shows before and after side by side. An export of a commit serves as the baseline:
`git archive <commit> | tar -x -C DIR`. Times are CPU time of the measuring thread, so
other work on the machine disturbs them less than wall time (but still some: compare
only figures from one command).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CHANNEL = "hospital"
KINDS = ("ORU^R01", "ADT^A04", "ADT^A08", "ADT^A01")


def build_worker(tree: Path = REPO) -> Any:
    """A transform worker over the tree's routes.yaml, built as the engine builds its router;
    it never journals nor publishes here. The code is imported from `tree`."""
    if str(tree) not in sys.path:
        sys.path.insert(0, str(tree))
    from core.settings import load_settings
    from engine.pipeline import TransformWorker
    from engine.runtime import EngineRuntime

    settings = load_settings(tree / "routes.yaml", env={})
    router = EngineRuntime(settings).router()
    return TransformWorker(router, None, lambda: None)  # type: ignore[arg-type, return-value]


def make_items(count: int) -> list[tuple[str, Any]]:
    """`count` distinct messages of the benchmark mix, as the journal hands them over."""
    from bench.messages import MessageFactory
    from core.journal import Accepted

    factory = MessageFactory("TB0001")
    items = []
    for seq in range(count):
        out = factory.message(seq)
        items.append((out.kind, Accepted(seq + 1, CHANNEL, out.payload, out.charset)))
    return items


def one_round(worker: Any, items: list[tuple[str, Any]]) -> dict[str, float]:
    """Mean µs per message by kind (and `mix` over all) for one pass over `items`."""
    from engine.bus import encode

    spent: dict[str, int] = defaultdict(int)
    seen: dict[str, int] = defaultdict(int)
    clock = time.thread_time_ns  # CPU time of this thread: others' load on the machine does not count
    transform = worker.transform
    for kind, item in items:
        start = clock()
        outcome, envelopes = transform(item)
        encode([env for _dest, env in envelopes])
        spent[kind] += clock() - start
        seen[kind] += 1
        if outcome.status != "routed":
            raise SystemExit(f"message {item.journal_id} ({kind}) was {outcome.status}: {outcome.error}")
    figures = {k: spent[k] / seen[k] / 1000 for k in spent}
    figures["mix"] = sum(spent.values()) / sum(seen.values()) / 1000
    return figures


def _child(baseline: Path, count: int) -> subprocess.Popen[str]:
    """The same measurement on another checkout, driven one round per line on stdin."""
    env = {**os.environ, "PYTHONPATH": str(baseline)}
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--serve",
        str(baseline),
        "--messages",
        str(count),
    ]
    return subprocess.Popen(
        command, cwd=baseline, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )


def _serve(tree: Path, count: int) -> None:
    """Child side of `--baseline`: one round per request line, answered as one JSON line."""
    worker, items = build_worker(tree), make_items(count)
    one_round(worker, items[: min(count, 500)])  # warm caches as the parent does
    print("ready", flush=True)
    for _ in sys.stdin:
        print(json.dumps(one_round(worker, items)), flush=True)


def _ask(child: subprocess.Popen[str]) -> dict[str, float]:
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write("go\n")
    child.stdin.flush()
    return json.loads(child.stdout.readline())  # type: ignore[no-any-return]


def _row(name: str, figures: list[dict[str, float]]) -> str:
    return name.ljust(10) + "".join(
        f"{statistics.median(f[k] for f in figures):>10.1f}" for k in (*KINDS, "mix")
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=3000, help="messages per round (default 3000)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds; the median is shown (default 5)")
    parser.add_argument("--baseline", type=Path, help="another checkout to measure alongside")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.serve.resolve(), args.messages)
        return
    items = make_items(args.messages)
    mix = {k: sum(1 for kind, _ in items if kind == k) / len(items) for k in KINDS}
    ours: list[dict[str, Any]] = []
    theirs: list[dict[str, Any]] = []
    if args.baseline:
        children = [_child(args.baseline.resolve(), args.messages), _child(REPO, args.messages)]
        for child in children:
            assert child.stdout is not None
            child.stdout.readline()  # "ready"
        for i in range(args.rounds):
            order = (0, 1) if i % 2 == 0 else (1, 0)
            for side in order:
                (theirs if side == 0 else ours).append(_ask(children[side]))
        for child in children:
            child.communicate("")
    else:
        worker = build_worker()
        one_round(worker, items[: min(args.messages, 500)])
        ours = [one_round(worker, items) for _ in range(args.rounds)]
    print(
        f"transform + JSON encoding, CPU µs per message (median of {args.rounds} rounds of "
        f"{args.messages} messages; share " + ", ".join(f"{k} {v:.0%}" for k, v in mix.items()) + ")"
    )
    print(" " * 10 + "".join(f"{k:>10}" for k in (*KINDS, "mix")))
    if theirs:
        print(_row("baseline", theirs))
    print(_row("this tree", ours))
    if theirs:
        before = statistics.median(f["mix"] for f in theirs)
        after = statistics.median(f["mix"] for f in ours)
        print(f"mix: {before:.1f} → {after:.1f} µs ({before / after:.2f}× faster)")


if __name__ == "__main__":
    main()
