"""Coverage-guided fuzzing of the parsers that take input from outside, in a bounded run.

Each target (fuzz_targets.py) runs in its own process under atheris (fuzz_run.py), starting
from the conformance corpus, the shipped routes.yaml and mappings. In `make test` each target
runs a fixed number of inputs (`RUNS`) from seed 1 with Python's hash seed fixed: the same
inputs on every run, so CI fails when the code changes, never because a run happened to wander
further than the last one (about 60 s for the seven, `CAP_SECONDS` each at most). With
MCH_FUZZ_SECONDS set (`make fuzz`) a target explores for that long instead, from MCH_FUZZ_SEED
(0 picks a new seed each run), keeping the corpus it grows under MCH_FUZZ_CORPUS. An input that
breaks a target's contract, or runs past the per-input limit, fails the test with the input and
the command that replays it; the input is kept under var/fuzz/crashes/.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz_targets import REPO, TARGETS, seeds

from support import CONFORMANCE, REPORT, unavailable

EXPLORING = "MCH_FUZZ_SECONDS" in os.environ
CAP_SECONDS = 30.0  # a bounded run stops here even on a slow machine (a prefix of the same inputs)
SECONDS = float(os.environ.get("MCH_FUZZ_SECONDS", CAP_SECONDS))
# Inputs per target in a bounded run: about 6 s each on a loaded two-core machine.
RUNS = {
    "charset": 150_000,
    "converters": 80_000,
    "framer": 2_000,
    "hl7_reader": 1_000,
    "intake": 12_000,
    "mapping_yaml": 400,
    "routes_yaml": 500,
}
SEED = int(os.environ.get("MCH_FUZZ_SEED", "1"))
CORPUS = os.environ.get("MCH_FUZZ_CORPUS", "")  # a folder kept between runs; else a temporary one
PER_INPUT_SECONDS = 5  # one input taking longer is a hang: every parser's work is linear in its size
CRASHES = REPO / "var" / "fuzz" / "crashes"
RUNNER = Path(__file__).with_name("fuzz_run.py")

# Inputs the fuzzer may grow to: large enough for a long message or config file, small enough
# to keep thousands of inputs a second where the target is fast.
MAX_LEN = {"converters": 256, "routes_yaml": 16384, "mapping_yaml": 16384}
DEFAULT_MAX_LEN = 8192

pytestmark = pytest.mark.slow


def _libfuzzer_figure(output: str, name: str) -> str:
    found = re.findall(rf"{name}: (\d+)", output)
    return found[-1] if found else "?"


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_parser_keeps_its_contract_on_fuzzed_input(target: str, tmp_path: Path) -> None:
    """The target returns or raises only its declared errors, never hangs, and keeps its
    round-trip properties, on every input atheris generates within the time budget."""
    if importlib.util.find_spec("atheris") is None:
        unavailable("atheris is not installed (pip install -e '.[test]' on Linux x86_64)")
    if not CONFORMANCE.is_dir():
        pytest.fail(f"conformance corpus not found at {CONFORMANCE} (set MCH_CONFORMANCE_DIR)")
    seed_dir = tmp_path / "seeds"
    seed_dir.mkdir()
    for i, data in enumerate(seeds(target, CONFORMANCE)):
        (seed_dir / f"seed-{i:04d}").write_bytes(data)
    corpus = Path(CORPUS) / target if CORPUS else tmp_path / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    CRASHES.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        str(RUNNER),
        target,
        f"-max_total_time={max(1, math.ceil(SECONDS))}",
        *([] if EXPLORING else [f"-runs={RUNS[target]}"]),
        f"-seed={SEED}",
        f"-timeout={PER_INPUT_SECONDS}",
        f"-max_len={MAX_LEN.get(target, DEFAULT_MAX_LEN)}",
        "-rss_limit_mb=2048",
        f"-artifact_prefix={CRASHES}/{target}-",
        str(corpus),
        str(seed_dir),
    ]
    env = {**os.environ, "MCH_FUZZ_WORKDIR": str(tmp_path / "work"), "PYTHONHASHSEED": "0"}
    started = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=SECONDS + 120)
    elapsed = time.monotonic() - started
    output = done.stderr + done.stdout
    runs = re.findall(r"Done (\d+) runs", output)
    REPORT.append(
        f"fuzz {target}: {runs[-1] if runs else '?'} inputs in {elapsed:.1f} s, "
        f"coverage {_libfuzzer_figure(output, 'cov')} edges, seed {SEED}"
    )
    if done.returncode != 0:
        written = re.findall(r"Test unit written to (\S+)", output)
        crash = Path(written[-1]) if written else None
        shown = repr(crash.read_bytes()[:400]) if crash and crash.is_file() else "(no input written)"
        replay = f"{sys.executable} {RUNNER} {target} {crash}" if crash else ""
        tail = "\n".join(output.splitlines()[-40:])
        pytest.fail(
            f"fuzz target {target!r} broke its contract (exit {done.returncode}) on input {shown}\n"
            f"replay: {replay}\n{tail}",
            pytrace=False,
        )
