"""The sources benchmark still works end to end (`python -m bench.sources --smoke`).

Run as the user runs it, in a subprocess, against real PostgreSQL and MariaDB. It checks
that every source measured and its row is in the table and in the page section, never how
fast anything was: speed is for `make bench-sources` to report, not for a test to assert.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.sources import BEGIN, END, carried, write_section
from support import require_service

REPO = Path(__file__).resolve().parents[3]
ROWS = (
    "| mllp | baseline | 20 | 1 |",
    "| file | batch file | 20 | 1 |",
    "| db_poll postgresql | PostgreSQL through SQLAlchemy (psycopg) | 20 | 1 |",
    "| db_poll postgresql-odbc | PostgreSQL through ODBC (PostgreSQL Unicode) | 20 | 1 |",
    "| db_poll mariadb | MariaDB through SQLAlchemy (PyMySQL) | 20 | 1 |",
    "| db_poll mariadb-odbc | MariaDB through ODBC (MariaDB Unicode) | 20 | 1 |",
)


@pytest.mark.services
def test_smoke_run_measures_every_source_and_appends_its_section(tmp_path: Path) -> None:
    require_service("127.0.0.1", 5432, "PostgreSQL")
    require_service("127.0.0.1", 3306, "MariaDB")
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nearlier figures\n", encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "bench.sources", "--smoke", "--output", str(page)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert proc.returncode == 0, (
        f"bench.sources --smoke failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    )
    assert "failed" not in proc.stdout
    written = page.read_text(encoding="utf-8")
    for row in ROWS:
        assert row in proc.stdout
        assert row in written
    assert written.startswith("# Benchmarks\n\nearlier figures\n")
    assert "`python -m bench.sources --smoke --output" in written and "git revision" in written


def test_a_second_write_replaces_the_section_and_a_bench_page_keeps_it(tmp_path: Path) -> None:
    page = tmp_path / "benchmarks.md"
    page.write_text("# Benchmarks\n\nfigures\n", encoding="utf-8")
    write_section(page, f"{BEGIN}\nfirst run\n{END}\n")
    write_section(page, f"{BEGIN}\nsecond run\n{END}\n")
    text = page.read_text(encoding="utf-8")
    assert text == f"# Benchmarks\n\nfigures\n\n{BEGIN}\nsecond run\n{END}\n"
    rendered = carried(page, "# Benchmarks\n\nnew figures\n")
    assert rendered == f"# Benchmarks\n\nnew figures\n\n{BEGIN}\nsecond run\n{END}\n"
