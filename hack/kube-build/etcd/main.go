// Command etcd is the etcd server at exactly the version k8s.io/kubernetes
// pins in this module's go.mod, so the API server and its store always match.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
