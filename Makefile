# The README's commands. Each target builds the virtualenv on first use: the demo needs only
# the package, the other targets add the dev tools.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
BASE   := $(VENV)/.installed-base
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench dashboards docs clean

$(BASE): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(BASE)

$(STAMP): $(BASE)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

# the whole product on the embedded default: no keys, no Docker, no collector
demo: $(BASE)
	$(BIN)/otel-agents demo $(DEMO_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check otel_agents tests bench dashboards docs
	$(BIN)/ruff format --check otel_agents tests bench dashboards docs

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/python -m pytest

# every benchmark: one table, bench/results/*.json, the README's results table (a few minutes;
# BENCH_QUICK=1 for a smoke run, BENCH_ARGS="hook_cost turn_cost" for some only)
bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

# regenerate docs/reference.md from otel_agents.names (a test fails when it is stale)
docs: $(STAMP)
	$(BIN)/python docs/reference.py

# regenerate the committed alert rules and dashboards, and their Kubernetes manifests
# (tests fail when they are stale)
dashboards: $(STAMP)
	$(BIN)/python -m dashboards.alerts
	$(BIN)/python -m dashboards.dashboards
	$(BIN)/python -m dashboards.kubernetes  # deploy/kubernetes/: from the two above

clean:
	rm -rf $(VENV) build dist *.egg-info
