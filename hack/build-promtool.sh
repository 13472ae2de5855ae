#!/usr/bin/env bash
# Build promtool (Prometheus's rule checker and rule unit-test runner, hack/promtool) from the Go
# module proxy into the cache. tests/test_alerts.py runs `promtool check rules` on the chart's
# PrometheusRule and on the dashboard's expressions, and `promtool test rules` on tests/alerts/.
# Prints the binary's path.
#
#   hack/build-promtool.sh            build it if missing (needs Go; ~3 min cold on 2 cores)
#   hack/build-promtool.sh --cached   only print the path of a binary already built; exit 1 if there is none
set -euo pipefail
cd "$(dirname "$0")/promtool"
version=$(sed -n 's#^[[:space:]]*\(require \)\{0,1\}github.com/prometheus/prometheus \(v[^ ]*\).*$#\2#p' go.mod)
[ -n "$version" ] || { echo "no github.com/prometheus/prometheus version in hack/promtool/go.mod" >&2; exit 1; }
cache=${SUPERCHECK_CACHE:-$HOME/.cache/supercheck}
out="$cache/promtool/$version"
if [ "${1:-}" = --cached ]; then
  [ -x "$out/promtool" ] || exit 1
  echo "$out/promtool"
  exit 0
fi
if [ ! -x "$out/promtool" ]; then
  echo "building promtool (github.com/prometheus/prometheus $version)" >&2
  start=$(date +%s)
  mkdir -p "$out"
  tmp="$out/promtool.tmp.$$"
  # The release's tags (.promu.yml) less builtinassets (the web UI, which promtool does not
  # serve), plus remove_all_sd: no cloud service discoveries (AWS, Azure, GCE, ...), which only
  # `promtool check service-discovery` would use; rule checks and rule tests need none.
  # go.sum pins every module: -mod=readonly, so a build never changes the checked-in files.
  GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    go build -trimpath -tags netgo,remove_all_sd -ldflags "-s -w" \
    -o "$tmp" github.com/prometheus/prometheus/cmd/promtool >&2
  mv "$tmp" "$out/promtool"
  echo "built in $(( $(date +%s) - start ))s" >&2
fi
echo "$out/promtool"
