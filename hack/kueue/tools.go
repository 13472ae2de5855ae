//go:build tools

// Package tools pins Kueue's manager (sigs.k8s.io/kueue/cmd/kueue) as a dependency of this
// module, so that `go build sigs.k8s.io/kueue/cmd/kueue` builds it from the module proxy's
// copy at the version go.mod names. Benchmark-only (hack/bench_scale.py): Supercheck does not
// depend on Kueue.
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
