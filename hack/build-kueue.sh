#!/usr/bin/env bash
# Build Kueue's manager (sigs.k8s.io/kueue/cmd/kueue, pinned in hack/kueue/go.mod) into the cache,
# with the CRDs (crds/) and the webhook configurations (webhooks.yaml) its module ships beside it. Benchmark-only: hack/bench_scale.py compares
# Supercheck's queue with Kueue's; nothing else uses it, so hack/install-deps.sh does not build it.
# Prints the binary's path.
#
#   hack/build-kueue.sh            build it if missing (needs Go; several minutes cold on 2 cores)
#   hack/build-kueue.sh --cached   only print the path of a binary already built; exit 1 if there is none
set -euo pipefail
cd "$(dirname "$0")/kueue"
version=$(sed -n 's#^[[:space:]]*\(require \)\{0,1\}sigs.k8s.io/kueue \(v[^ ]*\)$#\2#p' go.mod)
[ -n "$version" ] || { echo "no sigs.k8s.io/kueue version in hack/kueue/go.mod" >&2; exit 1; }
cache=${SUPERCHECK_CACHE:-$HOME/.cache/supercheck}
out="$cache/kueue/$version"
if [ "${1:-}" = --cached ]; then
  [ -x "$out/kueue" ] && [ -d "$out/crds" ] && [ -f "$out/webhooks.yaml" ] || exit 1
  echo "$out/kueue"
  exit 0
fi
if [ ! -x "$out/kueue" ] || [ ! -d "$out/crds" ]; then
  echo "building kueue (sigs.k8s.io/kueue $version)" >&2
  start=$(date +%s)
  mkdir -p "$out"
  tmp="$out/kueue.tmp.$$"
  # go.sum pins every module: -mod=readonly, so a build never changes the checked-in files.
  GOFLAGS="${GOFLAGS:--p=1} -mod=readonly -buildvcs=false" CGO_ENABLED=0 \
    nice -n 10 go build -trimpath -ldflags "-s -w" -o "$tmp" sigs.k8s.io/kueue/cmd/kueue >&2
  # The module zip carries the generated CRDs (config/components/crd/bases): copy them beside the binary.
  src=$(GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
  rm -rf "$out/crds.tmp" && mkdir -p "$out/crds.tmp"
  cp "$src"/config/components/crd/bases/*.yaml "$out/crds.tmp/"
  chmod -R u+w "$out/crds.tmp"
  rm -rf "$out/crds" && mv "$out/crds.tmp" "$out/crds"
  mv "$tmp" "$out/kueue"
  echo "built in $(( $(date +%s) - start ))s" >&2
fi
if [ ! -f "$out/webhooks.yaml" ]; then
  # Its webhook configurations as kustomize's input (service references; the benchmark points them
  # at the manager's address).
  src=$(GOFLAGS=-mod=readonly go list -m -f '{{.Dir}}' sigs.k8s.io/kueue)
  cp "$src/config/components/webhook/manifests.yaml" "$out/webhooks.yaml.tmp"
  chmod u+w "$out/webhooks.yaml.tmp" && mv "$out/webhooks.yaml.tmp" "$out/webhooks.yaml"
fi
echo "$out/kueue"
