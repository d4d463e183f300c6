# Everything installs into .venv in this folder; nothing global. Re-running skips what is done.
PYTHON ?= python3
VENV   := .venv
UV     := $(VENV)/bin/uv
UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
RUN    := $(UV) run --no-sync

.DEFAULT_GOAL := help
.PHONY: help install run test topology fuzz lint format openapi e2e bench bench-transports events-chaos clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "flinks-bff needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --inexact keeps pip and uv themselves in the venv.
# Every group but `e2e` (Playwright, ~160 MB), which only `make e2e` installs.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --inexact --all-groups --no-group e2e --python $(VENV)/bin/python
	@touch $@

$(VENV)/.synced-e2e: $(VENV)/.synced
	$(UV) sync --locked --inexact --all-groups --python $(VENV)/bin/python
	@touch $@

install: $(VENV)/.synced ## create .venv and install the locked dependencies (not the browser driver)

run: install ## start the BFF, the Flinks sandbox and an embedded Redis (development)
	$(RUN) flinks-bff dev

# Two workers (pytest-xdist), a file per worker at a time: each worker has its own Redis (see
# tests/conftest.py). Hypothesis is derandomized here: a run passes or fails the same way each time.
TEST_WORKERS ?= 2

test: install ## run the test suite (no browser needed) on TEST_WORKERS=2 processes
	$(RUN) pytest -m "not e2e and not capacity" -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

# The topology tests (also part of `make test`; about 90 s on one worker: flows, failover, the load
# balancer), then the flows, race, fault and events-out suites again on a Redis Cluster (3 primaries, 3
# replicas) and on Sentinels (a primary, a replica, 3 Sentinels) the run starts
# (TEST_TOPOLOGY, tests/topology/serve.py): one worker each, as a cluster has one database.
TOPOLOGY_SUITES := tests/integration/test_connect_flow.py tests/integration/test_oauth_flow.py \
  tests/integration/test_oauth_hostile.py tests/integration/test_faults.py \
  tests/integration/test_events_out.py tests/integration/test_events_replicas.py \
  tests/store/test_event_queue.py

topology: install ## the BFF on real Redis topologies the tests start (cluster with replicas, Sentinels)
	$(RUN) pytest -m topology $(PYTEST_ARGS)
	TEST_TOPOLOGY=cluster $(RUN) pytest -m "not e2e and not capacity" -n 0 $(TOPOLOGY_SUITES) $(PYTEST_ARGS)
	TEST_TOPOLOGY=sentinel $(RUN) pytest -m "not e2e and not capacity" -n 0 $(TOPOLOGY_SUITES) $(PYTEST_ARGS)

# The property tests with random, many more examples, the OAuth state race at 200 rounds,
# schemathesis at 10,000+ cases and the capacity tests (several minutes). Replay a failure with `make fuzz SEED=<seed>`.
ifndef SEED
SEED := $(shell $(PYTHON) -c 'import secrets; print(secrets.randbelow(2**32))')
endif

fuzz: install ## property tests at random and at scale, the long race and API runs (SEED=)
	@echo "make fuzz: hypothesis seed $(SEED) (replay: make fuzz SEED=$(SEED))"
	RACE_ROUNDS=200 SCHEMATHESIS_MAX_EXAMPLES=2000 SCHEMATHESIS_MIN_CASES=10000 \
	  $(RUN) pytest -m "(fuzz or capacity) and not e2e" -n $(TEST_WORKERS) --dist loadfile --timeout 1800 \
	  --hypothesis-profile=fuzz --hypothesis-seed=$(SEED) --hypothesis-show-statistics $(PYTEST_ARGS)
	@echo "make fuzz: hypothesis seed was $(SEED)"

e2e: $(VENV)/.synced-e2e ## browser end-to-end tests (needs Debian's chromium at /usr/bin/chromium)
	$(RUN) pytest -m e2e $(PYTEST_ARGS)

lint: $(VENV)/.synced-e2e ## ruff check, ruff format --check, mypy --strict (Playwright installed: the browser tests are type-checked too)
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: install ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

# The API contract, from the code with default settings (sorted keys): commit it. The suite fails
# while the committed file differs (tests/api/test_contract.py).
openapi: install ## write openapi.json, the API contract, from the code
	$(RUN) python -m app.api.openapi openapi.json

# install syncs every dependency group, `bench` (py-spy) included. BENCH_QUICK=1: about 2 minutes.
bench: install ## CPU per flow of the BFF against a bare baseline and a floor (build/bench/, ~9 min)
	$(RUN) python -m bench.run $(BENCH_ARGS)

bench-transports: install ## the outbound client's candidate transports, CPU per call at 1/32/200 in flight (~4 min)
	$(RUN) python -m bench.transports

events-chaos: install ## events out under chaos: 1,000 events, a BFF replica SIGKILLed every 3 s (~2 min; CHAOS_ARGS=)
	$(RUN) python -m bench.events_chaos $(CHAOS_ARGS)

clean: ## remove the virtualenv and build folders
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache
