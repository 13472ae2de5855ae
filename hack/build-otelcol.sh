#!/usr/bin/env bash
# Build a minimal OpenTelemetry Collector (hack/otelcol: the OTLP receiver and the file exporter)
# from the Go module proxy into the cache: the local environment's trace sink when tracing is on
# (`supercheck-dev up --tracing`), and the trace tests' (tests/operator/test_tracing_collector.py).
# Prints the binary's path.
#
#   hack/build-otelcol.sh            build it if missing (needs Go; ~3-5 min cold on 2 cores)
#   hack/build-otelcol.sh --cached   only print the path of a binary already built; exit 1 if there is none
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The collector release pinned in hack/otelcol/go.mod (core v0.165.0, contrib's file exporter v0.165.1).
version=$(sed -n 's/^\tgo.opentelemetry.io\/collector\/otelcol \(v[^ ]*\).*/\1/p' "$here/otelcol/go.mod")
cache=${SUPERCHECK_CACHE:-$HOME/.cache/supercheck}
out="$cache/otelcol/$version"
if [ "${1:-}" = --cached ]; then
  [ -x "$out/otelcol" ] || exit 1
  echo "$out/otelcol"
  exit 0
fi
if [ ! -x "$out/otelcol" ]; then
  echo "building the OpenTelemetry Collector $version (OTLP receiver, file exporter)" >&2
  start=$(date +%s)
  mkdir -p "$out"
  tmp="$out/otelcol.tmp.$$"
  (cd "$here/otelcol" && GOFLAGS="-buildvcs=false ${GOFLAGS:-}" CGO_ENABLED=0 \
    go build -trimpath -ldflags "-s -w" -o "$tmp" .) >&2
  mv "$tmp" "$out/otelcol"
  echo "built in $(( $(date +%s) - start ))s" >&2
fi
echo "$out/otelcol"
