# Supercheck — see README.md.
SHELL := /bin/bash
PY := .venv/bin/python
DEV := .venv/bin/supercheck-dev
# Operator configuration variables given on the command line (make dev-up RUNNING_CAPACITY=3)
# reach `supercheck-dev up` through the environment: make exports command-line variables.

.PHONY: deps dev-up dev-down dev-status demo test unit crds bench clean

deps:
	@hack/install-deps.sh

dev-up: deps
	@$(DEV) up

dev-down:
	@if [ -x $(DEV) ]; then $(DEV) down; fi

dev-status:
	@$(DEV) status

demo: dev-up
	@$(PY) -m supercheck_localenv.demo

# Every test: the environment is started (or reused) first; the fixtures give each
# test a fresh namespace and clean Redis, PostgreSQL and S3 state.
test: dev-up
	@$(PY) -m pytest -q -rs $(PYTEST_ARGS)

# Pure tests only, no cluster.
unit: deps
	@$(PY) -m pytest -q -m "not cluster" $(PYTEST_ARGS)

crds: deps
	@$(PY) -m supercheck.crdgen

bench: dev-up
	@$(PY) hack/bench_operator.py
	@$(PY) hack/bench_runner.py

clean: dev-down
	rm -rf .dev
