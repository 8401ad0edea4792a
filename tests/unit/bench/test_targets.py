"""The Targets section judges each target of the benchmark issue from a run's figures.

Built from hand-made results, so the verdicts are checked without running anything:
a figure on the right side of a target is "met", on the wrong side "not met", and a
backlog or soak smaller than the issue's size is never judged.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bench.report import Results, e2e_cpu, e2e_table, render, targets
from bench.scenarios import LAYOUTS, BacklogResult, E2EResult, IngestRow, Plan, Point, SoakResult


def _point(rate: float, p50: float = 0.005, p99: float = 0.02) -> Point:
    return Point(rate, p50, p99, 100, 100, 0, [], 0.9, 0.1)


def _e2e(
    backend: str, layout: str, rate: float, paced: float | None = None, ack_p99: float = 0.02
) -> E2EResult:
    r = E2EResult(
        backend=backend,
        count=10_000,
        connections=16,
        rate_limit=paced,
        ack_rate=paced or rate,
        ack_p50=0.002,
        errors=0,
        e2e_rate=rate,
        p50=0.1,
        p99=0.2,
        worst=0.3,
        to_journal_p50=0.002,
        journal_to_store_p50=0.1,
        measured=10_000,
        settled=True,
        statuses={},
    )
    r.layout, r.ack_p99, r.delivered, r.span = layout, ack_p99, 10_000, 10_000 / rate
    return r


def _backlog(count: int, drain: float) -> BacklogResult:
    return BacklogResult("embedded", count, 3000.0, 0, count, 1.0, drain, count / drain, True, {})


def _soak(count: int, drift: float) -> SoakResult:
    return SoakResult(
        "rabbitmq-pg", count, 4, 300.0, 0.01, 0.03, 0, 60_000, 70_000, 70_000, drift, 16.0, 0, 0, []
    )


def _results(tmp_path: Path) -> Results:
    results = Results(
        Plan(concurrency=[1, 16], work_dir=tmp_path), "python -m bench", "traffic", datetime.now(UTC)
    )
    results.ingest = [
        IngestRow("engine embedded, all roles", "engine", {1: _point(500, p50=0.0008), 16: _point(900)}),
        IngestRow("engine rabbitmq-pg, --role ingest", "engine", {16: _point(1200)}),
        IngestRow("peer medplum", "peer", {1: _point(4000), 16: _point(1000)}),
    ]
    results.e2e = [
        _e2e("rabbitmq-pg", "a", 1000),
        _e2e("rabbitmq-pg", "b", 1500),
        _e2e("rabbitmq-pg", "c", 2100),
        _e2e("rabbitmq-pg", "a", 1000, paced=1000.0, ack_p99=0.004),
    ]
    results.backlog = [_backlog(5_000, 10.0), _backlog(100_000, 70.0)]
    results.soak = [_soak(1_000_000, 4.0)]
    return results


def _verdicts(results: Results) -> list[str]:
    return [t.line() for t in targets(results)]


def test_each_target_is_judged_on_the_right_figure(tmp_path: Path) -> None:
    lines = _verdicts(_results(tmp_path))
    assert lines[0].startswith("- ingest rabbitmq-pg (--role ingest) C=16 ÷ medplum C=16 = 1.20×")
    assert lines[0].endswith(": met")
    assert "ingest embedded (all roles) C=16 ÷ medplum C=16 = 0.90×" in lines[1]
    assert lines[1].endswith(": not met")
    assert "= 2,100 msg/s, best of (a) 1,000, (b) 1,500, (c) 2,100" in lines[2]
    assert lines[2].endswith(": met")
    assert "ACK p99 rabbitmq-pg (a) at 1,000 msg/s offered = 4.00 ms" in lines[3]
    assert lines[3].endswith(": met")
    assert "C=1 ACK p50 = 0.80 ms" in lines[4] and lines[4].endswith(": met")
    assert lines[5].endswith("not run at the issue's size (5,000)")
    assert "100,000 drained" in lines[6] and lines[6].endswith(": not met")
    assert "+4.0%" in lines[7] and lines[7].endswith(": met")
    assert "(c) ÷ (b) = 1.40×" in lines[8] and lines[8].endswith(": met")


def test_missing_figures_say_not_measured(tmp_path: Path) -> None:
    results = Results(
        Plan(concurrency=[2], work_dir=tmp_path), "python -m bench", "traffic", datetime.now(UTC)
    )
    lines = _verdicts(results)
    assert lines and all("not measured" in line for line in lines)


def test_page_starts_with_the_targets_and_compares_layouts(tmp_path: Path) -> None:
    results = _results(tmp_path)
    page = render(results)
    assert page.index("## Targets") < page.index("## How to run") < page.index("## Summary")
    assert "`mch-engine run --role ingest --role transform` + `mch-engine run --role deliver" in page
    rows = e2e_table(results.e2e)
    assert len({row.count("|") for row in rows}) == 1
    assert "| 1.50× |" in rows[3] and "| 2.10× |" in rows[4]
    assert [x.key for x in LAYOUTS] == ["a", "b", "c", "d"]


def test_a_disturbed_measurement_is_flagged_in_its_verdict(tmp_path: Path) -> None:
    results = _results(tmp_path)
    results.e2e[2].other_cpu = 0.8
    line = _verdicts(results)[2]
    assert line.endswith(": met (disturbed: other processes used 0.80 core meanwhile)")


def test_cpu_per_message_table_names_each_process_and_sums_the_engine() -> None:
    r = _e2e("rabbitmq-pg", "d", 500.0)
    r.cpu_us = {"ingest": 380.0, "transform 0/2": 830.0, "deliver 0-1": 390.0, "PostgreSQL + RabbitMQ": 400.0}
    paced = _e2e("rabbitmq-pg", "a", 500.0, paced=1000.0)
    paced.cpu_us = {"all roles": 3000.0}
    lines = e2e_cpu([r, paced])
    assert len(lines) == 6  # text, blank, header, rule, one full-speed run, blank
    assert "ingest 380; transform 0/2 830; deliver 0-1 390; PostgreSQL + RabbitMQ 400 | 1,600 |" in lines[4]
