# Supercheck — see README.md.
SHELL := /bin/bash
PY := .venv/bin/python
DEV := .venv/bin/supercheck-dev
# Operator configuration variables given on the command line (make dev-up RUNNING_CAPACITY=3)
# reach `supercheck-dev up` through the environment: make exports command-line variables.

.PHONY: deps deps-python dev-up dev-down dev-status demo test unit lint crds bench bench-scale clean

# Everything: Debian packages, the virtualenv, npm packages, Kubernetes and helm.
deps:
	@hack/install-deps.sh

# Only the Python virtualenv (quick): all that `unit` and `lint` need.
deps-python:
	@hack/install-deps.sh python

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

# Pure tests only: no cluster, no tool-backed (integration) tests; needs only the virtualenv.
unit: deps-python
	@$(PY) -m pytest -q -m "not cluster and not integration" $(PYTEST_ARGS)

# Static gates: ruff, mypy, import-linter, helm lint (when helm is built), hadolint (when installed).
lint: deps-python
	@hack/lint.sh

crds: deps
	@$(PY) -m supercheck.crdgen

bench: dev-up
	@$(PY) hack/bench_operator.py
	@$(PY) hack/bench_runner.py
	@$(PY) hack/bench_jobrun.py

# Supercheck at scale (1,000 k6 runs) against an Indexed Job and Kueue; BENCH_SCALE_ARGS="--runs 200 --skip-kueue".
# Kueue runs when hack/build-kueue.sh has built it (benchmark-only; not part of `make deps`).
bench-scale: dev-up
	@source .dev/env && $(PY) hack/bench_scale.py $(BENCH_SCALE_ARGS)

clean: dev-down
	rm -rf .dev
