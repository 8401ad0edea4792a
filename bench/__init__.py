"""mch-engine benchmarks: the engine measured against peers in the same run.

Run `python -m bench` (or `make bench`) from the repository root; `python -m bench --help`
lists the knobs. The harness is not a timed test: it prints figures and writes
docs/benchmarks.md together with the exact command and the machine, because a
number is only meaningful next to the peers measured in the same command on the same
machine. `python -m bench --smoke` only checks that the harness works end to end.
"""
