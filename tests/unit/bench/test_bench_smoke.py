"""The benchmark harness still works end to end (`python -m bench --smoke`).

Runs it as the user would, in a subprocess, on the embedded default with tiny counts and
one peer. It checks that the harness finished and printed its figures, never how fast
anything was: speed is for `make bench` to report, not for a test to assert.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_smoke_run_finishes_and_prints_a_table(tmp_path: Path) -> None:
    out = tmp_path / "benchmarks.md"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, f"bench --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "| target | C | msg/s | p50 ms | p99 ms |" in proc.stdout
    assert "| engine embedded, all roles | 2 |" in proc.stdout
    assert "| peer echo | 2 |" in proc.stdout
    page = out.read_text(encoding="utf-8")
    assert "python -m bench --smoke" in page
    assert "git revision" in page
