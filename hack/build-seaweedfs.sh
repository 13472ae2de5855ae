#!/usr/bin/env bash
# Build SeaweedFS's `weed` from the Go module proxy into the cache: the local environment's S3
# server (it checks SigV4 signatures and POST policies, which the tests of the runners' upload
# grants rely on). Prints the binary's path.
#
#   hack/build-seaweedfs.sh            build it if missing (needs Go; cold time in README.md)
#   hack/build-seaweedfs.sh --cached   only print the path of a binary already built; exit 1 if there is none
#
# Not `go install pkg@version`: SeaweedFS's go.mod has a replace directive, which go install
# refuses. So the module is downloaded (checked against the checksum database) and built as the
# main module in its own directory, with its own go.mod and go.sum.
set -euo pipefail
module=github.com/seaweedfs/seaweedfs
version=v0.0.0-20261109003541-7506e5f91cd6
cache=${SUPERCHECK_CACHE:-$HOME/.cache/supercheck}
out="$cache/seaweedfs/$version"
if [ "${1:-}" = --cached ]; then
  [ -x "$out/weed" ] || exit 1
  echo "$out/weed"
  exit 0
fi
if [ ! -x "$out/weed" ]; then
  echo "building SeaweedFS $version" >&2
  start=$(date +%s)
  # GOFLAGS=-mod=mod would let go rewrite the (read-only) module's go.mod; the module's own
  # go.sum is complete, so the default -mod=readonly is what we want.
  src=$(cd / && GOFLAGS= go mod download -json "$module@$version" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  [ -d "$src" ] || { echo "go mod download $module@$version gave no directory" >&2; exit 1; }
  mkdir -p "$out"
  tmp="$out/weed.tmp.$$"
  (cd "$src" && GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$tmp" ./weed) >&2
  mv "$tmp" "$out/weed"
  echo "built in $(( $(date +%s) - start ))s" >&2
fi
echo "$out/weed"
