# The README's two commands: `make up` runs the whole system, `make test` passes the tests.
.PHONY: up test unit lint migrate clean

VENV := .venv
INSTALLED := $(VENV)/.installed

$(INSTALLED): pyproject.toml constraints.txt scripts/venv.sh
	@scripts/venv.sh

up: $(INSTALLED)
	@scripts/ensure-infra.sh $(if $(findstring postgresql,$(DATABASE_URL)),--postgres,)
	@$(VENV)/bin/chamados up

test: $(INSTALLED)
	@scripts/ensure-infra.sh --tests
	@$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

unit: $(INSTALLED)
	@$(VENV)/bin/python -m pytest tests/unit $(PYTEST_ARGS)

migrate: $(INSTALLED)
	@$(VENV)/bin/chamados migrate

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
