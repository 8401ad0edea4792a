"""The import layers of docs/design.md hold: `lint-imports` keeps every contract in setup.cfg,
and a module that imports upwards breaks it (so the check can fail)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    if not LINT_IMPORTS.exists():
        pytest.fail("lint-imports is not installed: pip install -e '.[dev]'")
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "setup.cfg")],
        cwd=root,
        env={"PATH": str(LINT_IMPORTS.parent), "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_layer_contract_is_kept() -> None:
    result = _lint_imports(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 2 kept, 0 broken." in result.stdout


def _copy_with(tmp_path: Path, module: str, line: str) -> Path:
    """A copy of the packages and setup.cfg where `module` (a path) ends with `line`."""
    for name in ("core", "transforms", "channels", "deadletter", "engine", "monitors"):
        shutil.copytree(REPO / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "setup.cfg", tmp_path / "setup.cfg")
    path = tmp_path / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{line}  # noqa\n", encoding="utf-8")
    return tmp_path


def test_a_base_module_importing_the_engine_breaks_the_layers(tmp_path: Path) -> None:
    result = _lint_imports(_copy_with(tmp_path, "core/clock.py", "from engine import journal"))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "core is not allowed to import engine" in result.stdout
    assert "core.clock -> engine.journal" in result.stdout


def test_the_runtime_naming_a_connector_breaks_its_contract(tmp_path: Path) -> None:
    result = _lint_imports(_copy_with(tmp_path, "engine/runtime.py", "from channels.mllp import source"))

    assert result.returncode == 1, result.stdout + result.stderr
    assert "engine.runtime -> channels.mllp.source" in result.stdout
