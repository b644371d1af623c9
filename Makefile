# Two commands (see README.md):
#   make quickstart   set up .venv (once) and run the offline quickstart study
#   make test         set up .venv (once) and run lint + the whole test suite
# Setup is skipped when pyproject.toml has not changed (stamp keyed by its hash).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
HASH := $(shell (sha256sum pyproject.toml 2>/dev/null || shasum -a 256 pyproject.toml) | cut -c1-16)
STAMP := $(VENV)/.stamp-$(HASH)

.PHONY: setup quickstart test lint

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,lite]'
	rm -f $(VENV)/.stamp-*
	touch $@

quickstart: setup
	$(BIN)/xaicompare quickstart

lint: setup
	$(BIN)/ruff check xaicompare tests benchmarks
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/python -m pytest -q
