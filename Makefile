# orderbus: `make demo` to see the pipeline run, `make test` to prove it.
PYTHON ?= python3
VENV   := $(CURDIR)/.venv
BIN    := $(VENV)/bin
export ORDERBUS_HOME ?= $(CURDIR)/.orderbus
export PATH := $(BIN):$(PATH)

.PHONY: install browser faults up down gates test unit demo clean

$(BIN)/orderbus: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

install: $(BIN)/orderbus browser faults

# The console's browser tests drive Debian's chromium through Playwright (which never downloads
# a browser here); installed only when missing, and only root can
browser:
	@command -v chromium >/dev/null || [ "$$(id -u)" != 0 ] || \
	  { apt-get update -q && apt-get install -y -q --no-install-recommends chromium; }

# Network faults (hosts of their own, `up --hosts`) are nftables rules inside a namespace; a
# wrong clock is libfaketime's
faults:
	@{ command -v nft >/dev/null && [ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]; } || \
	  [ "$$(id -u)" != 0 ] || \
	  { apt-get update -q && apt-get install -y -q --no-install-recommends nftables libfaketime; }

up: install
	orderbus up

down:
	@if [ -x $(BIN)/orderbus ]; then orderbus down; fi

# What every change passes before any test runs: lint, format, types (pyproject.toml sets each)
gates: install
	ruff check .
	ruff format --check .
	mypy

unit: gates
	pytest -q tests/unit

# Starts Kafka and PostgreSQL, runs every test, and stops them again whatever the tests did.
# pytest's own exit code (5 when nothing was collected) decides the result. Prometheus and
# Alertmanager come from Debian's packages (as root); where they cannot be installed, their
# end-to-end test says so, and fails under CI=true.
test: gates
	infra/prometheus/install.sh || echo "make test: without Prometheus, test_prometheus.py cannot run" >&2
	orderbus up
	status=0; pytest -q $(PYTEST_ARGS) || status=$$?; orderbus down; exit $$status

demo: install
	orderbus demo

clean: down
	rm -rf $(VENV) build *.egg-info
