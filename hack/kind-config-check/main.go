// kind-config-check: reads a kind cluster configuration as `kind create cluster --config FILE` does,
// without Docker, and prints the defaulted configuration as JSON (exit 1 and the reason otherwise).
//
// kind's own loader (pkg/internal/apis/config/encoding.Load) is an internal package: no program
// outside kind may import it, and no public API loads a config without creating the cluster. So
// this takes the loader's steps with kind's public pieces, at the version go.mod pins: the
// apiVersion/kind check (kind.x-k8s.io/v1alpha4, Cluster), a strict decode into the public
// v1alpha4.Cluster with the decoder and option the loader uses (go.yaml.in/yaml/v3, KnownFields: an
// unknown or misspelt field is an error, as in kind), then kind's v1alpha4.SetDefaultsCluster.
// kind's validation is internal too; of it, this checks what a cluster needs at all: known node
// roles and at least one control-plane node.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

func main() {
	if len(os.Args) != 2 {
		fail("usage: kind-config-check FILE")
	}
	raw, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail("%v", err)
	}
	cfg, err := load(raw)
	if err != nil {
		fail("%s: %v", os.Args[1], err)
	}
	out, _ := json.MarshalIndent(cfg, "", "  ")
	fmt.Println(string(out))
}

func load(raw []byte) (*v1alpha4.Cluster, error) {
	var tm struct {
		Kind       string `yaml:"kind,omitempty"`
		APIVersion string `yaml:"apiVersion,omitempty"`
	}
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("could not determine kind / apiVersion: %w", err)
	}
	if tm.APIVersion != "kind.x-k8s.io/v1alpha4" || tm.Kind != "Cluster" {
		return nil, fmt.Errorf("unknown apiVersion/kind %q/%q (kind reads kind.x-k8s.io/v1alpha4 Cluster)", tm.APIVersion, tm.Kind)
	}
	cfg := &v1alpha4.Cluster{}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(cfg); err != nil {
		return nil, fmt.Errorf("unable to decode config: %w", err)
	}
	v1alpha4.SetDefaultsCluster(cfg)
	controlPlanes := 0
	for i, node := range cfg.Nodes {
		switch node.Role {
		case v1alpha4.ControlPlaneRole:
			controlPlanes++
		case v1alpha4.WorkerRole:
		default:
			return nil, fmt.Errorf("nodes[%d]: unknown role %q", i, node.Role)
		}
	}
	if controlPlanes == 0 {
		return nil, fmt.Errorf("no control-plane node")
	}
	return cfg, nil
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kind-config-check: "+format+"\n", args...)
	os.Exit(1)
}
