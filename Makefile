# Everything installs into .venv in this folder; nothing global. Re-running skips what is done.
PYTHON ?= python3
VENV   := .venv
UV     := $(VENV)/bin/uv
UV_VERSION := 0.13.8
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
RUN    := $(UV) run --no-sync

.DEFAULT_GOAL := help
.PHONY: help install run test lint format e2e bench clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "flinks-bff needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# --inexact keeps pip and uv themselves in the venv.
$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --inexact --all-groups --python $(VENV)/bin/python
	@touch $@

install: $(VENV)/.synced ## create .venv and install the locked dependencies

run: install ## start the BFF, the Flinks sandbox and an embedded Redis (development)
	$(RUN) flinks-bff dev

test: install ## run the test suite (no browser needed)
	$(RUN) pytest -m "not e2e" $(PYTEST_ARGS)

e2e: install ## browser end-to-end tests (needs Debian's chromium at /usr/bin/chromium)
	$(RUN) pytest -m e2e $(PYTEST_ARGS)

lint: install ## ruff check, ruff format --check, mypy --strict
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy

format: install ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

bench: install ## load and cost benchmark: BFF vs a bare baseline (build/bench/, ~7 min)
	$(RUN) python -m bench.run $(BENCH_ARGS)

clean: ## remove the virtualenv and build folders
	rm -rf $(VENV) build .mypy_cache .pytest_cache .ruff_cache
