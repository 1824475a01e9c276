# The two commands a fresh machine needs (Python 3.11+): `make demo` and `make test`.
# Each creates .venv on first use, installs the package into it, then does its job.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SCENARIO ?=
RUNBOOK ?= email_provider_failure
DEMO_INCIDENT := DEMO-$(shell date -u +%Y%m%d-%H%M%S)
INCIDENT ?= $(DEMO_INCIDENT)

.PHONY: demo demo-incident test lint install clean strip

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[test]"
	touch $@ $(VENV)/.installed

install: $(VENV)/.installed

## demo: run a runbook against a simulated incident (SCENARIO=name to pick one; see `runbook list`)
demo: $(VENV)/.installed
	@# exit code 3 means "incident diagnosed": the expected outcome of a drill, not a make failure
	$(BIN)/runbook demo $(RUNBOOK) $(if $(SCENARIO),--scenario $(SCENARIO),) || [ $$? -eq 3 ]

## demo-incident: one simulated incident worked with two runbooks the documented way — a dry run that prints
## each plan, its digest and the command approving exactly those plans, then that command run as the
## operator — each applying its mitigation and confirming recovery, compiled into runs/$(INCIDENT)/review.*
demo-incident: $(VENV)/.installed
	@set -e; mkdir -p runs; \
	approve() { grep -A1 '^to apply exactly these plans' | tail -n 1 | sed -e "s/<you>/$$1/" -e 's|^ *runbook |$(BIN)/runbook |'; }; \
	$(BIN)/runbook demo email_provider_failure --scenario smtp_auth_failure --incident $(INCIDENT) --no-progress \
	  -p test_recipient oncall@lineup.app > runs/.demo-dry.txt || [ $$? -eq 3 ]; \
	cat runs/.demo-dry.txt; cmd=$$(approve alice < runs/.demo-dry.txt); echo "» $$cmd"; eval "$$cmd" || [ $$? -eq 3 ]; \
	$(BIN)/runbook demo sms_delivery_failure --scenario rate_limited --incident $(INCIDENT) --no-progress \
	  > runs/.demo-dry.txt || [ $$? -eq 3 ]; \
	cat runs/.demo-dry.txt; cmd=$$(approve bob < runs/.demo-dry.txt); echo "» $$cmd"; eval "$$cmd" || [ $$? -eq 3 ]; \
	rm -f runs/.demo-dry.txt; \
	$(BIN)/runbook review $(INCIDENT)

## test: lint, type-check, the whole test suite (starts its own PostgreSQL and Redis), then nbval
test: $(VENV)/.installed-test
	$(BIN)/ruff check lib tests notebooks
	$(BIN)/mypy
	$(BIN)/pytest -n 2  # two workers: the notebook runs are CPU-bound kernels, one per core
	# nbval runs each notebook with its defaults (the demo sandbox, nothing approved); its run records
	# go to a throwaway folder.
	RUNBOOK_RUNS_DIR=$$(mktemp -d) $(BIN)/pytest --nbval-lax notebooks/ -p no:cacheprovider -W ignore::DeprecationWarning

## strip: clean notebooks saved from Jupyter for git (outputs, counts, papermill and execution metadata)
NOTEBOOKS ?= notebooks/*.ipynb tests/extra_runbook/*.ipynb
STRIP_KEYS := metadata.papermill metadata.widgets cell.metadata.papermill cell.metadata.execution \
  cell.metadata.collapsed cell.metadata.scrolled cell.metadata.jupyter cell.metadata.editable cell.metadata.deletable
strip: $(VENV)/.installed-test
	$(BIN)/nbstripout --keep-id --extra-keys "$(STRIP_KEYS)" $(NOTEBOOKS)

clean:
	rm -rf $(VENV) runs
