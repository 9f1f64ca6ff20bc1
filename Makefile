# The same commands locally and in CI. `make demo` and `make test` create the environment first.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help env demo test lint typecheck unit fuzz bench sandbox clean chromium screenshots

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

env: $(VENV)/.synced  ## create .venv from uv.lock (installs uv with pip if missing)

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --frozen --all-extras --compile-bytecode
	@touch $@

demo: env  ## a night of 20,000 rows against local sandboxes, with a check of the result
	$(BIN)/phonesync demo

sandbox: env  ## serve the sandboxes (FHIR + Sheets) and write var/sandbox/sandbox.env
	$(BIN)/phonesync sandbox

test: lint unit  ## lint, type-check and the whole test suite

lint: env  ## ruff lint + format check, mypy strict, deploy/ validators
	$(BIN)/ruff check src tests bench deploy
	$(BIN)/ruff format --check src tests bench deploy
	$(BIN)/mypy
	$(BIN)/python deploy/validate.py  # kubernetes-validate, hadolint, promtool (docs/operations.md)

unit: env chromium  ## pytest (needs PostgreSQL on 127.0.0.1:5432)
	$(BIN)/pytest

chromium:  ## Debian's chromium for the dashboard's browser tests (Playwright drives it; no download)
	@test -x /usr/bin/chromium || (apt-get update && apt-get install -y --no-install-recommends chromium)

screenshots: env chromium  ## retake docs/screenshots/*.png from the browser tests
	PHONESYNC_UPDATE_SCREENSHOTS=1 $(BIN)/pytest tests/web/test_browser.py

fuzz: env  ## 100,000 random and mutated cells through the normalisers
	$(BIN)/python bench/fuzz_normalise.py --cells 100000 --seed 1

bench: env  ## benchmarks (see docs/benchmarks.md)
	$(BIN)/python bench/run.py

clean:  ## remove the environment and local state
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
