# The two commands of the README: `make run` and `make test`. Each sets itself up (virtual environment,
# pinned install, migrations) so a fresh clone needs nothing else than a reachable Postgres and RabbitMQ.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PYTHONWARNINGS ?= ignore::DeprecationWarning

.PHONY: run test lint typecheck test-unit test-integration test-e2e bench demo clean

$(STAMP): pyproject.toml requirements.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Python 3.11 is required (found %s); set PYTHON=/path/to/python3.11" % sys.version.split()[0])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

## make run: set up, migrate, and run every service + the HTTP API on the local Postgres and RabbitMQ.
run: $(STAMP)
	$(BIN)/oms migrate
	$(BIN)/oms run

## make test: set up, lint, type-check, then unit, integration and end-to-end tests.
test: $(STAMP) lint typecheck
	$(BIN)/pytest -m unit -q
	$(BIN)/pytest -m integration -q
	$(BIN)/pytest -m e2e -q

## lint: ruff, and the import rules (services meet only through contracts; shared is a leaf; pure domains).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy shared services oms

test-unit: $(STAMP)
	$(BIN)/pytest -m unit -q

test-integration: $(STAMP)
	$(BIN)/pytest -m integration -q

test-e2e: $(STAMP)
	$(BIN)/pytest -m e2e -q

bench: $(STAMP)
	$(BIN)/oms bench place
	$(BIN)/oms bench pay

demo: $(STAMP)
	$(BIN)/oms demo --orders 200

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
