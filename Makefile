# The README's two commands: `make up` runs the whole system, `make test` passes the tests.
.PHONY: up test unit test-browser test-faults bench screenshots lint migrate clean

VENV := .venv
INSTALLED := $(VENV)/.installed

$(INSTALLED): pyproject.toml protocol/pyproject.toml agent/pyproject.toml constraints.txt scripts/venv.sh
	@scripts/venv.sh

up: $(INSTALLED)
	@scripts/ensure-infra.sh $(if $(findstring postgresql,$(DATABASE_URL)),--postgres,)
	@$(VENV)/bin/chamados up

# the main suite and, at the same time, the browser tests in their own process (scripts/test.sh)
test: $(INSTALLED)
	@scripts/ensure-infra.sh --tests
	@scripts/test.sh $(PYTEST_ARGS)

test-browser: $(INSTALLED)
	@scripts/ensure-infra.sh --tests
	@$(VENV)/bin/python -m pytest tests/browser --confcutdir=tests/browser $(PYTEST_ARGS)

# every fault case (private broker node and PostgreSQL cluster); `make test` runs a short subset
test-faults: $(INSTALLED)
	@scripts/ensure-infra.sh --tests
	@CHAMADOS_FAULTS=all CHAMADOS_FAULTS_REQUIRED=1 $(VENV)/bin/python -m pytest tests/faults $(PYTEST_ARGS)

# benchmarks against their baselines in the same run; figures go to bench/results/
bench: $(INSTALLED)
	@scripts/ensure-infra.sh --bench
	@$(VENV)/bin/python -m bench $(BENCH_ARGS)

# ruff, then the layering contracts of pyproject.toml [tool.importlinter] (docs/ENGINEERING.md)
lint: $(INSTALLED)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/lint-imports

unit: $(INSTALLED)
	@$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

# PNGs of the console for the docs (docs/screenshots/): a fresh system with demo data, then
# the dashboard, a ticket and a device at 1280 px and 390 px (scripts/screenshots.py)
screenshots: $(INSTALLED)
	@scripts/ensure-infra.sh --tests
	@$(VENV)/bin/python scripts/screenshots.py

migrate: $(INSTALLED)
	@$(VENV)/bin/chamados migrate

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
