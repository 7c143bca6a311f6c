# The two set-up commands: `make run` (embedded demo) and `make test` (the whole suite).
PYTHON ?= $(shell command -v python3.11 || command -v python3.12 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
SUPPORTED := (3, 11) <= sys.version_info[:2] <= (3, 12)

.PHONY: run test test-py312 test-core bench bench-forgetting clean browser-deps

# A Python we cannot use stops here, before .venv exists; a venv that fails to build is removed, not left half-built.
$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if $(SUPPORTED) else 1)' 2>/dev/null || { \
	  echo "make: stream-learner needs Python 3.11 or 3.12; $(PYTHON) is $$($(PYTHON) -V 2>&1): run make PYTHON=python3.11 (or python3.12)" >&2; exit 1; }
	@echo "make: creating $(VENV) with $$($(PYTHON) -V)" >&2
	@$(PYTHON) -m venv $(VENV) && $(BIN)/python -m pip install --quiet --upgrade pip || { rm -rf $(VENV); exit 1; }

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "make: installing stream-learner and its dependencies into $(VENV) (torch, river, Avalanche, Bytewax: several GB, a few minutes the first time)" >&2
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "make: installing stream-learner with its test and benchmark tools into $(VENV) (several GB, a few minutes the first time)" >&2
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

run: $(VENV)/.installed
	$(BIN)/stream-learner run $(ARGS)

test: $(VENV)/.installed-dev browser-deps
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# CI's second Python: the suite without the servers (unit, conformance, doctests), then the real path end to end
# (Kafka in, Redis snapshots, topics out; Bytewax recovery), in .venv-3.12 with Python 3.12 (pyenv's where it is not on PATH).
REAL_PATH_TESTS := tests/integration/test_embedded_run.py tests/integration/test_kafka_e2e.py tests/integration/test_kafka_torch.py tests/integration/test_crash_recovery.py tests/integration/test_redis_store.py
test-py312:
	@py=$$(bash .ci/find-python 3.12) && $(MAKE) --no-print-directory test-core PYTHON="$$py" VENV=.venv-3.12

test-core: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)
	$(BIN)/python -m pytest $(REAL_PATH_TESTS) $(PYTEST_ARGS)

bench: $(VENV)/.installed-dev
	$(BIN)/python benchmarks/throughput.py

# The forgetting suite's default set (732 runs: about 21 CPU-minutes, some 11 minutes on 2 idle cores): results and figures in
# benchmarks/results/, and the results section of benchmarks/README.md rewritten.
bench-forgetting: $(VENV)/.installed-dev
	$(BIN)/stream-learner bench forgetting --jobs 2 --out benchmarks/results --readme benchmarks/README.md

clean:
	rm -rf $(VENV) .venv-3.12 out

# The dashboard's browser test drives Debian's Chromium: installed once, where apt is usable
# (as root, or with password-less sudo); elsewhere that one test is skipped, with the reason.
browser-deps:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif ! command -v apt-get >/dev/null 2>&1; then echo "browser-deps: no apt-get here; the browser test will be skipped" >&2; \
	else \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO=none; fi; \
	  if [ "$$SUDO" = none ]; then echo "browser-deps: not root and no password-less sudo; the browser test will be skipped" >&2; \
	  else echo "browser-deps: installing chromium and chromium-driver (apt)" >&2; \
	    ( $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null ) \
	      || echo "browser-deps: apt could not install chromium; the browser test will be skipped" >&2; \
	  fi; \
	fi
