package test

import (
	"context"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// lwm2mSessions is how many LwM2M registrations g's node holds, as
// /cluster/nodes lists it.
func lwm2mSessions(t *testing.T, g *Gate, node string) int {
	t.Helper()
	for _, n := range g.MustDo(200, "GET", g.P("/cluster/nodes"), nil)["nodes"].([]any) {
		n := n.(map[string]any)
		if n["node_id"] == node {
			devs, _ := n["devices"].(map[string]any)
			v, _ := devs["LwM2M"].(float64)
			return int(v)
		}
	}
	t.Fatalf("node %s not listed", node)
	return 0
}

// The cluster issue's "LwM2M across nodes": registrations are in the
// shared store, so a NoSec device registered on node 1 whose next
// datagrams a UDP load balancer sends to node 2 gets 2.04 for its Update
// there (node 2 adopts the registration and node 1 drops its copy, the
// device staying ONLINE), a READ through node 3 reaches it at node 2, and
// its De-register reaching node 3 ends it.
func TestClusterLwM2MUpdateOnAnotherNode(t *testing.T) {
	gates := newCluster(t, 3, clusterOptions{}).gates
	g1, g2, g3 := gates[0], gates[1], gates[2]
	g1.CreateProduct("nb", "CoAP")
	dev := lwm2mDevice(t, g1, "wanderer", false, nil)
	ctx := context.Background()

	c := goClient(t, g1, lwm2mclient.Config{Server: g1.CoAP, Endpoint: "wanderer", Lifetime: 120})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	loc, local := c.Location(), c.LocalAddr().String()
	waitDeviceStatus(t, g1, dev, "ONLINE")
	// Saved within coap.save_interval (1 s by default).
	time.Sleep(2500 * time.Millisecond)

	// The balancer moves the device: its datagrams, from the same
	// address, now reach node 2.
	c.Close()
	c2 := goClient(t, g2, lwm2mclient.Config{Server: g2.CoAP, Endpoint: "wanderer", LocalAddr: local})
	resp, err := c2.Do(ctx, codes.POST, loc, nil, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Code != codes.Changed {
		t.Fatalf("Update at node 2: %v %s, want 2.04", resp.Code, resp.Payload)
	}
	waitDeviceStatus(t, g3, dev, "ONLINE")
	deadline := time.Now().Add(10 * time.Second)
	for lwm2mSessions(t, g3, "node-1") != 0 || lwm2mSessions(t, g3, "node-2") != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("node 1 holds %d registrations, node 2 %d; want 0 and 1", lwm2mSessions(t, g3, "node-1"), lwm2mSessions(t, g3, "node-2"))
		}
		time.Sleep(200 * time.Millisecond)
	}

	id := asyncCommand(t, g3, dev, map[string]any{"service_id": "LwM2M", "command_name": "READ",
		"paras": map[string]any{"path": "/3/0/2"}, "send_strategy": "immediately"})
	res := waitCommand(t, g3, dev, id, "SUCCESSFUL")["result"].(map[string]any)
	if v := res["values"].([]any)[0].(map[string]any)["value"]; v != "wanderer" {
		t.Fatalf("READ through node 3: %v", res)
	}
	if st := deviceStatus(t, g1, dev); st != "ONLINE" {
		t.Fatalf("device %s after node 1 dropped its copy", st)
	}

	// The device's De-register reaches node 3: it adopts and ends the
	// registration.
	c2.Close()
	c3 := goClient(t, g3, lwm2mclient.Config{Server: g3.CoAP, Endpoint: "wanderer", LocalAddr: local})
	if resp, err := c3.Do(ctx, codes.DELETE, loc, nil, 0, nil); err != nil || resp.Code != codes.Deleted {
		t.Fatalf("De-register at node 3: %v %v", err, resp)
	}
	waitDeviceStatus(t, g1, dev, "OFFLINE")
	if resp, err := c3.Do(ctx, codes.POST, loc, nil, 0, nil); err != nil || resp.Code != codes.NotFound {
		t.Fatalf("Update after De-register: %v %v, want 4.04", err, resp)
	}
}
