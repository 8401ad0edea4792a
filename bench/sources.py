"""`python -m bench.sources`: how fast the file and db_poll sources move N messages, against MLLP.

Every run gets a fresh embedded engine (SQLite journal and record store, memory:// bus)
started as an operator starts it (bench/stack.py), and the same N messages reach it one way:

- `mllp`: the bench's ADT/ORU traffic over `--connections` MLLP connections (the baseline);
- `file`: the same messages in one FHS/BHS batch file renamed into the watched directory;
- `db_poll`: N child checks committed in one transaction to `v_child_exam` on PostgreSQL or
  MariaDB, read through SQLAlchemy or through ODBC.

Clocks start when the messages are offered (first MLLP frame sent, file renamed, rows
committed) and stop at the journal's last `received_at` and the store's last `stored_at`.
The file's `settle` is a wait the operator configures, not work, so it is subtracted.
Ratios are against the MLLP baseline of the same command, never against other days' figures.
`--output PAGE` writes the table as a section of PAGE (replaced when there, else appended).
"""

from __future__ import annotations

import argparse
import shlex
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml
from sqlalchemy import func, select

from bench.load import run_async, run_load
from bench.messages import MessageFactory
from bench.report import load_average, machine
from bench.source_feeds import VIEWS, batch_file, drop, his_view
from bench.stack import Stack

CASES = ("mllp", "file", *(f"db_poll {kind}" for kind in VIEWS))
SETTLE = 0.2  # seconds a dropped file must stand still (the channel's `settle`)
POLL = 0.05  # seconds between looks at the directory or the view
BEGIN, END = "<!-- bench.sources: begin -->", "<!-- bench.sources: end -->"


@dataclass
class Run:
    """One delivery of N messages: seconds from offering them to the last journaled and stored."""

    journaled: float
    stored: float
    done: float | None = None  # the file in done/ (file only)


@dataclass
class Row:
    case: str
    how: str
    runs: list[Run] = field(default_factory=list)
    failure: str = ""

    def median(self, attr: str) -> float | None:
        values = [getattr(r, attr) for r in self.runs if getattr(r, attr) is not None]
        return statistics.median(values) if values else None


class Bench:
    """Runs the cases; `say` prints progress."""

    def __init__(self, count: int, connections: int, work: Path, say: Callable[[str], None]) -> None:
        self.count = count
        self.connections = connections
        self.work = work
        self.say = say
        self.factory = MessageFactory("S0", patients=max(50, min(5000, count)), templates=min(3000, count))
        self._runs = 0

    def fresh(self) -> MessageFactory:
        """The traffic under a run id of its own: no control id is seen twice."""
        self._runs += 1
        return self.factory.fork(f"S{int(time.time()) % 100000:05d}R{self._runs:03d}")

    def run(self, case: str) -> Run:
        with Stack("embedded", self.work) as stack:
            if case == "mllp":
                return self._mllp(stack)
            if case == "file":
                return self._file(stack)
            return self._db_poll(stack, case.split()[1])

    def _mllp(self, stack: Stack) -> Run:
        stack.engine()
        result = run_async(
            run_load(
                "127.0.0.1",
                stack.port,
                self.fresh(),
                target="engine",
                connections=self.connections,
                count=self.count,
            )
        )
        if result.acked != self.count:
            raise RuntimeError(f"{result.acked} of {self.count} ACKed: {result.error_samples[:3]}")
        return self._finish(stack, result.started_wall)

    def _file(self, stack: Stack) -> Run:
        inbox = stack.dir / "inbox"
        inbox.mkdir()
        doc = yaml.safe_load(stack.routes().read_text(encoding="utf-8"))
        doc["channels"]["lab_files"] = {
            "type": "file",
            "path": str(inbox),
            "pattern": "*.hl7",
            "encoding": "utf-8",
            "poll": f"{POLL}s",
            "settle": f"{SETTLE}s",
            "max_file_bytes": "1GiB",
        }
        for route in doc["routes"]:
            if "hospital" in route["from"]:
                route["from"].append("lab_files")
        write_routes(stack, doc)
        stack.engine()
        content = batch_file(self.fresh(), self.count)
        started = drop(inbox, "batch.hl7", content)
        done = inbox / "done" / "batch.hl7"
        deadline = time.monotonic() + self.timeout
        while not done.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"batch.hl7 not in done/ after {self.timeout:.0f} s")
            time.sleep(0.01)
        moved = time.time() - started
        run = self._finish(stack, started)
        return Run(run.journaled - SETTLE, run.stored - SETTLE, moved - SETTLE)

    def _db_poll(self, stack: Stack, kind: str) -> Run:
        with his_view(kind) as his:
            doc = yaml.safe_load(stack.routes().read_text(encoding="utf-8"))
            doc["channels"]["his_view"].update(url=his.url, view=his.view, every=f"{POLL}s")
            write_routes(stack, doc)
            stack.engine()
            his.insert(self.count)
            return self._finish(stack, time.time())

    @property
    def timeout(self) -> float:
        return 60.0 + self.count / 20

    def _finish(self, stack: Stack, started: float) -> Run:
        """Wait until every message is processed, then read the journal's and the store's times."""
        settled, statuses = stack.wait_settled(self.count, self.timeout, poll=0.1)
        if not settled or statuses.get("routed") != self.count:
            raise RuntimeError(f"not all {self.count} routed and delivered: {statuses}")
        journal = stack.journal_times()
        if len(journal) != self.count or any(d is None for _, d in journal.values()):
            raise RuntimeError(f"{len(journal)} journaled of {self.count}, not all delivered")
        return Run(max(r for r, _ in journal.values()) - started, last_stored(stack) - started)


def last_stored(stack: Stack) -> float:
    """The record store's latest `stored_at` (persons and records), epoch seconds.

    Not per message: a person row keeps only the last message that changed it, and a row
    read by db_poll has no control id; every delivery is done when this is read."""
    from channels.record_store.schema import persons, records

    with stack.sql.connect() as conn:
        times = [conn.execute(select(func.max(t.c.stored_at))).scalar() for t in (persons, records)]
    return max(t.timestamp() for t in times if t is not None)


def write_routes(stack: Stack, doc: dict[str, object]) -> None:
    """The stack's routes.yaml with this case's channel (before the engine starts)."""
    stack.routes().write_text(yaml.safe_dump(doc, allow_unicode=True, sort_keys=False), encoding="utf-8")


def _secs(x: float | None) -> str:
    return "–" if x is None else f"{x:,.2f}"


def _rate(count: int, seconds: float | None) -> str:
    return "–" if not seconds or seconds <= 0 else f"{count / seconds:,.0f}"


def _ratio(base: float | None, seconds: float | None) -> str:
    """How many times the baseline's throughput (its time over this time)."""
    return "–" if not base or not seconds or seconds <= 0 else f"{base / seconds:.2f}×"


def table(rows: list[Row], count: int) -> list[str]:
    """Medians: seconds to journaled and to stored, messages per second, ratio to MLLP."""
    base = next((r for r in rows if r.case == "mllp"), None)
    base_j = base.median("journaled") if base else None
    base_s = base.median("stored") if base else None
    out = [
        "| source | how | messages | runs | to journaled s | journaled msg/s | vs MLLP "
        "| to stored s | stored msg/s | vs MLLP | file in done/ s |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        j, s = row.median("journaled"), row.median("stored")
        out.append(
            f"| {row.case} | {row.how} | {count:,} | {len(row.runs)} | {_secs(j)} | {_rate(count, j)} "
            f"| {_ratio(base_j, j)} | {_secs(s)} | {_rate(count, s)} | {_ratio(base_s, s)} "
            f"| {_secs(row.median('done'))} |" + (f" failed: {row.failure}" if row.failure else "")
        )
    return out


def section(rows: list[Row], args: argparse.Namespace, command: str, started: datetime) -> str:
    """The page section: what was measured, how, on what, and the table."""
    m = machine()
    lines = [
        BEGIN,
        "## Sources: file and db_poll against MLLP",
        "",
        f"`{command}`, {started:%Y-%m-%d %H:%M} UTC, git revision {m['revision']}; "
        f"{m['cpu']}, {m['nproc']} cores, {m['memory']}, Python {m['python']}; load average before: "
        f"{load_average()}.",
        "",
        f"Each run starts a fresh engine on the embedded default (SQLite journal and record store, "
        f"memory:// bus, the shipped routes) and gives it {args.count:,} messages one way; the table shows "
        f"the medians of {args.repeat} runs. `mllp` is the bench's ADT/ORU traffic (60% ORU^R01 with 15 "
        f"OBX, 30% GB18030) over {args.connections} connections, clocked from the first frame sent. "
        f"`file` is the same messages in one FHS/BHS batch file renamed into the watched directory "
        f"(poll {POLL} s), clocked from the rename with the channel's settle ({SETTLE} s) subtracted. "
        f"`db_poll` commits {args.count:,} child checks in one transaction to `v_child_exam` "
        "(mappings/his/child_health_view.yaml; `updated_at` one millisecond apart) and reads them with the "
        "shipped channel settings "
        f"(batch 500, look-back 10 min) polling every {POLL} s, clocked from the commit. Times end at the "
        "journal's last `received_at` (the commit that journaled it: the file and db_poll sources journal "
        "a batch per commit, MLLP one message per ACK) and the record store's last `stored_at`; "
        "`vs MLLP` is the "
        "throughput over the MLLP baseline's in the same command.",
        "",
        *table(rows, args.count),
        "",
        "Run again with `make bench-sources BENCH_ARGS='--output docs/benchmarks.md'` (PostgreSQL and "
        "MariaDB on 127.0.0.1, `MCH_BENCH_PG_URL` and `MCH_BENCH_MARIADB_URL` to change them; the ODBC "
        "drivers `PostgreSQL Unicode` and `MariaDB Unicode`); without `--output` it only prints. "
        "`--count N`, `--repeat R`, `--connections C`, `--cases`; `--smoke` checks the harness in "
        "seconds (`tests/unit/bench/test_sources_smoke.py` runs it). `make bench` keeps this section.",
        "",
        END,
    ]
    return "\n".join(lines) + "\n"


def write_section(page: Path, text: str, markers: tuple[str, str] = (BEGIN, END)) -> None:
    """Replace a bench's section of `page` (this one's by default), or append it; the rest stays."""
    begin, end = markers
    old = page.read_text(encoding="utf-8") if page.exists() else ""
    if begin in old and end in old:
        head, _, rest = old.partition(begin)
        new = head + text.rstrip("\n") + rest.partition(end)[2]
    else:
        new = (old.rstrip("\n") + "\n\n" if old else "") + text
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(new, encoding="utf-8")


def carried(page: Path, text: str, markers: tuple[str, str] = (BEGIN, END)) -> str:
    """`text` (a page `python -m bench` renders whole) with a bench's section of `page` kept."""
    begin, end = markers
    old = page.read_text(encoding="utf-8") if page.exists() else ""
    if begin not in old or end not in old:
        return text
    kept = begin + old.partition(begin)[2].partition(end)[0] + end
    return text.rstrip("\n") + "\n\n" + kept + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench.sources",
        description="Time N messages through the file and db_poll sources against the same N over MLLP.",
    )
    p.add_argument("--count", type=int, default=2000, metavar="N", help="messages per run (2,000)")
    p.add_argument("--repeat", type=int, default=3, metavar="R", help="runs per source; medians shown (3)")
    p.add_argument("--connections", type=int, default=4, metavar="C", help="MLLP connections (4)")
    p.add_argument("--smoke", action="store_true", help="tiny counts, one run each: checks the harness")
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: " + ", ".join(CASES))
    p.add_argument("--output", type=Path, default=None, help="write the table as a section of this page")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.count, args.repeat, args.connections = 20, 1, 2
    cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in cases if c not in CASES]
    if unknown or args.count < 1 or args.repeat < 1:
        print(f"unknown cases {unknown} or --count/--repeat below 1", file=sys.stderr)
        return 2
    started = datetime.now(UTC)
    command = " ".join(["python", "-m", "bench.sources", *map(shlex.quote, argv)])
    rows = [
        Row(c, "baseline" if c == "mllp" else "batch file" if c == "file" else VIEWS[c.split()[1]])
        for c in cases
    ]
    with tempfile.TemporaryDirectory(prefix="mch-bench-sources-") as tmp:
        bench = Bench(args.count, args.connections, Path(tmp), lambda line: print(line, flush=True))
        for _ in range(args.repeat):
            for row in rows:
                if row.failure:
                    continue
                try:
                    run = bench.run(row.case)
                except Exception as exc:  # one source that fails costs only its row
                    row.failure = f"{type(exc).__name__}: {exc}"
                    print(f"{row.case} failed:\n{traceback.format_exc()}", flush=True)
                    continue
                row.runs.append(run)
                print(
                    f"{row.case:<24} journaled {run.journaled:7.2f} s  stored {run.stored:7.2f} s"
                    + (f"  done/ {run.done:.2f} s" if run.done is not None else ""),
                    flush=True,
                )
    print()
    print("\n".join(table(rows, args.count)))
    if args.output is not None:
        write_section(args.output, section(rows, args, command, started))
        print(f"\nwritten to {args.output}")
    return 1 if any(r.failure for r in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
