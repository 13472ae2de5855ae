#!/usr/bin/env bash
# Build the helm CLI from the Go module proxy into the cache (tests render and
# server-side validate the chart with it). Prints the binary's path.
#
#   hack/build-helm.sh            build it if missing (~2 min cold, needs Go)
#   hack/build-helm.sh --cached   only print the path of a binary already built; exit 1 if there is none
set -euo pipefail
version=v3.22.0
cache=${SUPERCHECK_CACHE:-$HOME/.cache/supercheck}
out="$cache/helm/$version"
if [ "${1:-}" = --cached ]; then
  [ -x "$out/helm" ] || exit 1
  echo "$out/helm"
  exit 0
fi
if [ ! -x "$out/helm" ]; then
  echo "building helm $version (~2 min cold)" >&2
  mkdir -p "$out"
  GOBIN="$out" CGO_ENABLED=0 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$version" \
    "helm.sh/helm/v3/cmd/helm@$version" >&2
fi
echo "$out/helm"
