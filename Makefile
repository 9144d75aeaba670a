# Two commands matter: `make run` and `make test`. Both install what they need into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test bench clean

$(STAMP): pyproject.toml
	rm -f $(VENV)/.installed-*
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

## make run: the whole pipeline on the embedded stack, with the demo scenario; Ctrl-C stops it.
run: install
	$(BIN)/pantau up --demo

## make test: the test suite against a real broker, Redis and services started by the tests.
test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

## make bench: throughput and latency per stage, each beside a baseline measured in the same run.
bench: install
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
