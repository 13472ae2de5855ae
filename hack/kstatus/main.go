// kstatus: what Flux's and cli-utils' kstatus make of one Kubernetes object.
//
// Reads an object as JSON on stdin and prints kstatus's status.Compute result as JSON:
// {"status": "InProgress|Current|Failed|Terminating|NotFound|Unknown", "message": "..."}.
// Supercheck's tests feed it the TestRun and JobRun statuses the operator writes, so the
// conditions are checked against kstatus's own rules rather than a reading of them.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail("read stdin: %v", err)
	}
	obj := map[string]interface{}{}
	// As the API machinery decodes: whole numbers as int64, which kstatus's accessors expect.
	if err := utiljson.Unmarshal(raw, &obj); err != nil {
		fail("parse JSON: %v", err)
	}
	res, err := status.Compute(&unstructured.Unstructured{Object: obj})
	if err != nil {
		fail("compute: %v", err)
	}
	out, _ := json.Marshal(map[string]string{"status": string(res.Status), "message": res.Message})
	fmt.Println(string(out))
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "kstatus: "+format+"\n", args...)
	os.Exit(1)
}
