# Two commands matter: `make run` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# uv installs from the lockfiles in seconds (pip takes over a minute); it is pinned here and put
# into the venv with pip, so a fresh clone needs only Python and make.
UV_VERSION := 0.13.9
UV := $(BIN)/uv
# Every locked dependency (base + test + embedded) and the base alone (for the Docker image).
LOCK := requirements.lock
LOCK_BASE := requirements-base.lock
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) 2>/dev/null | cksum | cut -d' ' -f1)

.PHONY: install lock run test test-faults bench soak clean

$(UV):
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)

# The project goes in with --no-deps: what it runs on is exactly the lockfile.
$(STAMP): pyproject.toml $(LOCK) $(UV)
	rm -f $(VENV)/.installed-*
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -r $(LOCK)
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

## make lock: resolve pyproject.toml's pins and everything they pull in, for Python >= 3.11 on any
## platform, into requirements.lock (base + test + embedded) and requirements-base.lock (base only,
## the same versions). Run it after changing a dependency in pyproject.toml and commit both files.
lock: $(UV)
	$(UV) pip compile --quiet --universal --python-version 3.11 --custom-compile-command "make lock" --extra test --extra embedded \
		pyproject.toml -o $(LOCK)
	$(UV) pip compile --quiet --universal --python-version 3.11 --custom-compile-command "make lock" -c $(LOCK) \
		pyproject.toml -o $(LOCK_BASE)

install: $(STAMP)

## make run: the whole pipeline on the embedded stack, with the demo scenario; Ctrl-C stops it.
run: install
	$(BIN)/pantau up --demo

## make test: the test suite against a real broker, Redis and services started by the tests.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider --ignore=tests/faults

## make test-faults: kill, restart, fail and pause every part of the stack under a steady stream of
## reports, then reconcile every report and page (prints a table, writes bench/results/faults.md).
## Then it copies the tables into README.md with their commit (bench/readme_faults.py), pass or fail.
test-faults: install
	PANTAU_FAULTS=1 $(BIN)/python -m pytest -q -p no:cacheprovider -s tests/faults; rc=$$?; \
	$(BIN)/python -m bench.readme_faults; exit $$rc

## make bench: throughput and latency per stage, each beside a baseline measured in the same run.
## make bench COMPARE=REF also runs each stage on commit REF and prints ratios to it;
## BENCH_ARGS passes more options (e.g. BENCH_ARGS="--stage pipeline --quick").
COMPARE ?=
BENCH_ARGS ?=
bench: install
	$(BIN)/python -m bench $(if $(COMPARE),--compare $(COMPARE)) $(BENCH_ARGS)

## make soak: the whole pipeline at a steady rate for SOAK_MINUTES (10), sampling every service's
## memory and every consumer group's lag; prints slopes per minute, writes bench/results/soak.md.
## Not part of make test or CI. SOAK_ARGS passes more options (e.g. --rate 200 --sample-s 5).
SOAK_MINUTES ?= 10
soak: install
	$(BIN)/python -m bench.soak --minutes $(SOAK_MINUTES) $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
