"""The rules benchmark still works end to end (`python -m bench.rules_bench --smoke`).

Run as the user runs it, in a subprocess, on SQLite and (when it answers) PostgreSQL. It
checks that every point was measured with and without the rules and that the rules made
their records, never how fast anything was: speed is for `make bench-rules` to report.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.rules_bench import BEGIN, END

REPO = Path(__file__).resolve().parents[3]


def test_smoke_run_prints_the_table_and_the_rules_made_records(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nearlier figures\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.rules_bench", "--smoke", "--backend", "sqlite", "--output", str(page)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"rules_bench --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "| backend | batch | records/s without rules | with rules | with ÷ without |" in proc.stdout
    for batch in (1, 100):
        assert re.search(rf"^\| sqlite \| {batch} \| [\d,]+ \| [\d,]+ \| [\d.]+× \|$", proc.stdout, re.M)
    made = re.search(
        r"derived records \(last run with rules\): RiskAssessment (\d+), PmtctCase (\d+)", proc.stdout
    )
    assert made, proc.stdout
    # 4 women, each graded at registration; 3 screened positive, each opens a PMTCT case
    assert int(made[1]) >= 4 and int(made[2]) == 3
    written = page.read_text(encoding="utf-8")
    assert written.startswith("# Benchmarks\n\nearlier figures\n\n" + BEGIN)
    assert (
        written.rstrip().endswith(END) and "`python -m bench.rules_bench --smoke --backend sqlite" in written
    )
