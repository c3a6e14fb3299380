package registry

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// Each node's heartbeat lists it, with its counts, until NodeLiveness
// passes without one; a node that leaves is unlisted at once.
func TestNodesHeartbeats(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	a, b, _ := twoNodes(t, clock)
	ctx := context.Background()
	started := clock.Now().Add(-time.Hour)
	if err := a.Heartbeat(ctx, NodeInfo{Started: started, Devices: map[string]int{"MQTT": 3, "LwM2M": 1}}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(HeartbeatInterval)
	if err := b.Heartbeat(ctx, NodeInfo{Started: started, Devices: map[string]int{"MQTT": 0, "LwM2M": 2}}); err != nil {
		t.Fatal(err)
	}
	names := func(r *Registry) []string {
		t.Helper()
		nodes, err := r.Nodes(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, n := range nodes {
			out = append(out, n.Node)
		}
		return out
	}
	nodes, err := b.Nodes(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := NodeInfo{Node: "node-a", Started: started, Seen: clock.Now().Add(-HeartbeatInterval),
		Devices: map[string]int{"MQTT": 3, "LwM2M": 1}}
	if len(nodes) != 2 || !reflect.DeepEqual(nodes[0], want) || nodes[1].Node != "node-b" {
		t.Fatalf("nodes %+v, want node-a %+v and node-b", nodes, want)
	}
	// node-a's last heartbeat is now just past NodeLiveness; node-b's not.
	clock.Advance(NodeLiveness - HeartbeatInterval + time.Millisecond)
	if got := names(a); !reflect.DeepEqual(got, []string{"node-b"}) {
		t.Fatalf("after node-a missed three heartbeats: %v, want [node-b]", got)
	}
	if err := a.Heartbeat(ctx, NodeInfo{Started: started}); err != nil {
		t.Fatal(err)
	}
	if got := names(a); !reflect.DeepEqual(got, []string{"node-a", "node-b"}) {
		t.Fatalf("after node-a's next heartbeat: %v", got)
	}
	if err := b.Leave(ctx); err != nil {
		t.Fatal(err)
	}
	if got := names(a); !reflect.DeepEqual(got, []string{"node-a"}) {
		t.Fatalf("after node-b left: %v, want [node-a]", got)
	}
}

// A single node writes no heartbeat and lists itself as LocalNode.
func TestNodesSingle(t *testing.T) {
	r, s := newTestRegistry(t, nil)
	ctx := context.Background()
	if nodes, err := r.Nodes(ctx); err != nil || len(nodes) != 0 {
		t.Fatalf("before a heartbeat: %v %v", nodes, err)
	}
	if err := r.Heartbeat(ctx, NodeInfo{Devices: map[string]int{"MQTT": 1}}); err != nil {
		t.Fatal(err)
	}
	nodes, err := r.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Node != LocalNode || nodes[0].Devices["MQTT"] != 1 {
		t.Fatalf("nodes %+v %v, want local with 1 MQTT device", nodes, err)
	}
	n := 0
	err = s.View(ctx, func(rd Reader) error {
		return rd.Scan(nodeBeatsPrefix(), nil, false, func(k, v []byte) (bool, error) { n++; return true, nil })
	})
	if err != nil || n != 0 {
		t.Fatalf("a single node wrote %d heartbeat records (%v)", n, err)
	}
}

func TestPing(t *testing.T) {
	r, s := newTestRegistry(t, nil)
	if err := r.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if err := r.Ping(context.Background()); err == nil {
		t.Fatal("ping of a closed store succeeded")
	}
}
