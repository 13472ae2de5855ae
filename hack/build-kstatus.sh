#!/usr/bin/env bash
# Build hack/kstatus (kstatus's status.Compute from sigs.k8s.io/cli-utils, the library Flux and
# the cli-utils appliers judge a resource's health with) into the cache. The tests feed it the
# TestRun and JobRun statuses the operator writes. Prints the binary's path.
#
#   hack/build-kstatus.sh            build it if missing (needs Go; ~1 min cold)
#   hack/build-kstatus.sh --cached   only print the path of a binary already built; exit 1 if there is none
set -euo pipefail
cd "$(dirname "$0")/kstatus"
version=$(sed -n 's#^[[:space:]]*\(require \)\{0,1\}sigs.k8s.io/cli-utils \(v[^ ]*\)$#\2#p' go.mod)
[ -n "$version" ] || { echo "no sigs.k8s.io/cli-utils version in hack/kstatus/go.mod" >&2; exit 1; }
cache=${SUPERCHECK_CACHE:-$HOME/.cache/supercheck}
out="$cache/kstatus/$version"
if [ "${1:-}" = --cached ]; then
  [ -x "$out/kstatus" ] || exit 1
  echo "$out/kstatus"
  exit 0
fi
if [ ! -x "$out/kstatus" ]; then
  echo "building kstatus (sigs.k8s.io/cli-utils $version)" >&2
  start=$(date +%s)
  mkdir -p "$out"
  tmp="$out/kstatus.tmp.$$"
  # go.sum pins every module: -mod=readonly, so a build never changes the checked-in files.
  GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" . >&2
  mv "$tmp" "$out/kstatus"
  echo "built in $(( $(date +%s) - start ))s" >&2
fi
echo "$out/kstatus"
