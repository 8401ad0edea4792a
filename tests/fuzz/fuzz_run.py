"""Run one fuzz target under atheris, the coverage-guided fuzzer (libFuzzer) for Python.

    python tests/fuzz/fuzz_run.py TARGET [libFuzzer options] [CORPUS_DIR ... | CRASH_FILE ...]

Given files instead of folders, it runs the target once on each: the way to replay a crash.
The engine's modules (and PyYAML's parser) are instrumented, so inputs that reach new
branches are kept and mutated further. tests/fuzz/test_fuzz_parsers.py drives it with a
time budget; docs/security.md ("Fuzzing") says how to run it longer.
"""

from __future__ import annotations

import logging
import sys

import atheris
import structlog

# The modules whose branches guide each target. Instrumenting only these keeps the start of a
# run short (instrumenting every module the targets import costs seconds of each CI budget).
INSTRUMENTED = {
    "framer": ["channels.mllp.framing"],
    "intake": [
        "channels.intake",
        "channels.mllp.ack",
        "channels.mllp.ingest",
        "transforms.batch",
        "transforms.converters",
        "transforms.decode",
        "transforms.hl7v2",
    ],
    "charset": ["transforms.decode"],
    "hl7_reader": ["transforms.batch", "transforms.hl7v2"],
    "converters": ["transforms.converters", "transforms.derived"],
    "routes_yaml": ["core.config_paths", "core.settings", "core.yaml_lines", "channels", "yaml"],
    "mapping_yaml": ["core.yaml_lines", "transforms.mapping", "yaml"],
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in INSTRUMENTED:
        targets = ", ".join(INSTRUMENTED)
        sys.exit(f"usage: fuzz_run.py TARGET [libFuzzer options] [corpus or files]; targets: {targets}")
    with atheris.instrument_imports(include=INSTRUMENTED[sys.argv[1]]):
        from fuzz_targets import TARGETS
    # The intake logs a warning for some inputs; at thousands of inputs a second that is noise.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.CRITICAL))
    atheris.Setup([sys.argv[0], *sys.argv[2:]], TARGETS[sys.argv[1]])
    atheris.Fuzz()


if __name__ == "__main__":
    main()
