# mch-engine: `make run` starts the engine on the embedded default, `make test` runs every test.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint check bench bench-sources bench-rules clean screenshots fuzz

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/mch-engine run --config routes.yaml

check: $(STAMP)
	$(BIN)/mch-engine check --config routes.yaml

test: $(STAMP)
	$(BIN)/mch-engine check --config routes.yaml
	$(BIN)/python -m pytest -n 3 --dist loadfile -m "not exclusive" $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m exclusive $(PYTEST_ARGS)

# The fuzz targets of tests/fuzz/ for FUZZ_SECONDS each (`make test` runs a fixed number of inputs each),
# growing a corpus kept under var/fuzz/corpus/; FUZZ_SEED=0 draws a new seed each run.
FUZZ_SECONDS ?= 600
FUZZ_SEED    ?= 0
fuzz: $(STAMP)
	MCH_FUZZ_SECONDS=$(FUZZ_SECONDS) MCH_FUZZ_SEED=$(FUZZ_SEED) MCH_FUZZ_CORPUS=var/fuzz/corpus \
		$(BIN)/python -m pytest tests/fuzz -p no:xdist $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

bench-sources: $(STAMP)
	$(BIN)/python -m bench.sources $(BENCH_ARGS)

bench-rules: $(STAMP)
	$(BIN)/python -m bench.rules_bench $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache .hypothesis

# The dashboard pictures in README.md (docs/images/), from sample messages sent to an engine.
screenshots: $(STAMP)
	$(BIN)/python -m tests.screenshots
