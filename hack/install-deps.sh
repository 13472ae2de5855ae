#!/usr/bin/env bash
# Install what Supercheck's local environment and tests need on a fresh Debian machine.
# Idempotent and quick when everything is already there.
#
#   hack/install-deps.sh          everything: system packages, the Python virtualenv, the
#                                 runner's npm packages, Kubernetes (built from the Go module
#                                 proxy, 6-8 min cold), helm and SeaweedFS, the local S3 server
#                                 (make deps; make test, dev-up, demo)
#   hack/install-deps.sh python   only the Python virtualenv      (make deps-python; make unit, lint)
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
case "$what" in
  all | python) ;;
  *) echo "usage: $0 [python]" >&2; exit 2 ;;
esac
stamp_dir=.dev/stamps
mkdir -p "$stamp_dir"

# Python virtualenv with the package and its test/dev/runner/lint extras, reinstalled when
# pyproject.toml changes.
python_venv() {
  local py_key
  py_key=$(sha256sum < pyproject.toml | cut -c1-16)
  if [ ! -x .venv/bin/python ] || [ "$(cat $stamp_dir/python 2>/dev/null)" != "$py_key" ]; then
    echo "[deps] python virtualenv"
    python3 -m venv .venv
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[test]'
    echo "$py_key" > $stamp_dir/python
  fi
}

if [ "$what" = python ]; then
  python_venv
  exit 0
fi

# 1. System packages (Debian): Redis, PostgreSQL, Chromium (and its headless shell, which headless
#    runs use) and ffmpeg (videos) for Playwright,
#    util-linux/iproute2/procps for the node agent (unshare, mount), and git for a suite fetched
#    from git (the runner runs the git binary; its tests run git daemon and git http-backend),
#    tmux for the CLI's test in a real terminal (tests/test_cli.py).
pkgs=(redis-server postgresql chromium chromium-headless-shell ffmpeg util-linux procps ca-certificates git tmux)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[deps] apt-get install ${missing[*]}"
  SUDO=; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# 2. The Python virtualenv.
python_venv

# 3. The runner's npm packages (@playwright/test, pinned by package-lock.json).
#    Browsers are not downloaded: Chromium comes from Debian.
if [ -f runner-image/package-lock.json ]; then
  npm_key=$(sha256sum < runner-image/package-lock.json | cut -c1-16)
  if [ ! -d runner-image/node_modules ] || [ "$(cat $stamp_dir/npm 2>/dev/null)" != "$npm_key" ]; then
    echo "[deps] npm ci (runner-image)"
    (cd runner-image && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    echo "$npm_key" > $stamp_dir/npm
  fi
fi

# 4-9. The Go-built tools, each built once per version into ~/.cache/supercheck, side by side:
#    one build's module downloads overlap another's compiling (Go's caches take concurrent builds).
#    4. Kubernetes and etcd; 5. helm, to render and validate the chart in the tests (and `make
#    lint`'s helm lint); 6. SeaweedFS, the local environment's S3 server (it checks signatures and
#    POST policies, as the tests of the runners' upload grants need); 7. kstatus (cli-utils), the
#    judge Flux uses, for the tests of the TestRun/JobRun conditions; 8. a minimal OpenTelemetry
#    Collector (OTLP receiver, file exporter: hack/otelcol), the trace sink of tracing's tests and
#    of `make dev-up SUPERCHECK_TRACING=1`; 9. promtool (Prometheus), to check the chart's alerts and
#    the dashboard's queries and run the alerts' unit tests (tests/test_alerts.py); 10. kind-config-check
#    (kind's config types, strict decoding and defaults), which reads kind-config.yaml in the tests as kind would.
pids=()
hack/build-kube.sh >/dev/null & pids+=($!)
hack/build-helm.sh >/dev/null & pids+=($!)
hack/build-seaweedfs.sh >/dev/null & pids+=($!)
hack/build-kstatus.sh >/dev/null & pids+=($!)
hack/build-otelcol.sh >/dev/null & pids+=($!)
hack/build-promtool.sh >/dev/null & pids+=($!)
hack/build-kind-config-check.sh >/dev/null & pids+=($!)
for pid in "${pids[@]}"; do
  wait "$pid"
done
