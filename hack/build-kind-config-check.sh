#!/usr/bin/env bash
# Build hack/kind-config-check (kind's public config types, strict decoding and defaulting from
# sigs.k8s.io/kind) into the cache. The tests read kind-config.yaml with it, as
# `kind create cluster --config kind-config.yaml` would, without Docker. Prints the binary's path.
#
#   hack/build-kind-config-check.sh            build it if missing (needs Go; ~30 s cold)
#   hack/build-kind-config-check.sh --cached   only print the path of a binary already built; exit 1 if there is none
set -euo pipefail
cd "$(dirname "$0")/kind-config-check"
version=$(sed -n 's#^[[:space:]]*\(require \)\{0,1\}sigs.k8s.io/kind \(v[^ ]*\)$#\2#p' go.mod)
[ -n "$version" ] || { echo "no sigs.k8s.io/kind version in hack/kind-config-check/go.mod" >&2; exit 1; }
cache=${SUPERCHECK_CACHE:-$HOME/.cache/supercheck}
out="$cache/kind-config-check/$version"
if [ "${1:-}" = --cached ]; then
  [ -x "$out/kind-config-check" ] || exit 1
  echo "$out/kind-config-check"
  exit 0
fi
if [ ! -x "$out/kind-config-check" ]; then
  echo "building kind-config-check (sigs.k8s.io/kind $version)" >&2
  start=$(date +%s)
  mkdir -p "$out"
  tmp="$out/kind-config-check.tmp.$$"
  # go.sum pins every module: -mod=readonly, so a build never changes the checked-in files.
  GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" . >&2
  mv "$tmp" "$out/kind-config-check"
  echo "built in $(( $(date +%s) - start ))s" >&2
fi
echo "$out/kind-config-check"
