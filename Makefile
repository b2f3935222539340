# Two commands a new user needs: `make run` (set up + run the suite on the sample corpus) and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false
export DO_NOT_TRACK ?= 1
export ANONYMIZED_TELEMETRY ?= false
export HF_HUB_OFFLINE ?= 1

.PHONY: setup run test test-fast audit bench clean up down

setup: $(STAMP)

# torch first and pinned: an unpinned torch requested by a dependency pulls a multi-GB CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	$(VENV)/bin/rag-health prepare-model
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/rag-health run

test: $(STAMP)
	$(PY) -m pytest

# The fast set: pure checks and the core on real embedded backends, without Prefect or the shared corpora.
test-fast: $(STAMP)
	$(PY) -m pytest -m 'not slow'

# Known vulnerabilities in the pinned environment (constraints.txt). --strict: a package that cannot be looked up
# (no vulnerability service reachable) fails the audit instead of passing it unchecked.
audit: $(STAMP)
	$(PY) -m pip install -q pip-audit==2.10.1
	$(PY) -m pip_audit -r constraints.txt --no-deps --disable-pip --strict --progress-spinner off

# A local Prefect stack for this checkout: server on PREFECT_PORT (default 4200), work pool, variables, every
# deployment in prefect.yaml, a worker. State, pids and logs in .prefect-local/. `up` twice starts nothing twice.
up: $(STAMP)
	$(PY) scripts/prefect_local.py up

# Standard library only: works without the virtual environment.
down:
	$(PYTHON) scripts/prefect_local.py down

bench: $(STAMP)
	$(PY) benchmarks/prometheus_runbooks.py

clean:
	rm -rf .rag-health .pytest_cache
