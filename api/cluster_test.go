package api

import (
	"context"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

func TestClusterNodes(t *testing.T) {
	s, reg := newTestServer(t)
	started := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	if err := reg.Heartbeat(context.Background(), registry.NodeInfo{Started: started,
		Devices: map[string]int{"MQTT": 2}}); err != nil {
		t.Fatal(err)
	}
	st, out := call(s, "tok1", "GET", "/v5/iot/p1/cluster/nodes", "")
	if st != 200 {
		t.Fatalf("%d %v", st, out)
	}
	nodes := out["nodes"].([]any)
	if len(nodes) != 1 {
		t.Fatalf("nodes %v", nodes)
	}
	n := nodes[0].(map[string]any)
	devices := n["devices"].(map[string]any)
	if n["node_id"] != registry.LocalNode || n["started"] != "20260304T050607Z" || len(n["last_seen"].(string)) != len("20260304T050607Z") ||
		devices["MQTT"] != float64(2) || devices["LwM2M"] != float64(0) || len(devices) != 2 {
		t.Fatalf("node %v", n)
	}
	// Another tenant's credential for this project, and no credential, are refused.
	if st, _ := call(s, "tok2", "GET", "/v5/iot/p1/cluster/nodes", ""); st != 403 {
		t.Fatalf("other project's token: %d", st)
	}
	if st, _ := call(s, "", "GET", "/v5/iot/p1/cluster/nodes", ""); st != 401 {
		t.Fatalf("no credential: %d", st)
	}
}
