"""Every `*_test.yaml` beside the shipped mappings passes (the same runner as `mch-engine mapping test`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import shipped_mappings
from transforms.mapping.testing import find_test_files, run_test_file

REPO = Path(__file__).resolve().parents[3]
FILES = find_test_files([REPO / "mappings"])


def test_every_shipped_mapping_has_tests() -> None:
    """Each mapping file and rule table in mappings/ has a *_test.yaml beside it."""
    tables = [
        p for p in sorted((REPO / "mappings/rules").glob("*.yaml")) if not p.name.endswith("_test.yaml")
    ]
    mappings = shipped_mappings() + tables
    untested = [
        str(p.relative_to(REPO)) for p in mappings if not p.with_name(f"{p.stem}_test.yaml").is_file()
    ]
    assert mappings and not untested, untested


@pytest.mark.parametrize("test_file", FILES, ids=[str(p.relative_to(REPO)) for p in FILES])
def test_mapping_file_cases(test_file: Path) -> None:
    """All cases of one test file pass; a failure shows the field-level differences."""
    results = run_test_file(test_file)
    failures = [f"{r.location()}: {r.name}\n  " + "\n  ".join(r.problems) for r in results if not r.passed]
    assert results and not failures, "\n".join(failures)
