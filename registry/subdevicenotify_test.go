package registry

import (
	"context"
	"testing"
	"time"
)

// fakeNotifier records the changes a node's MQTT adapter is told of.
type fakeNotifier chan string

func (f fakeNotifier) NotifySubDevices(_ context.Context, gatewayID string, c SubDeviceChange) error {
	s := gatewayID + " added"
	if c.Deleted {
		s = gatewayID + " deleted"
	}
	for _, d := range c.Devices {
		s += " " + d.DeviceID + "/" + d.NodeID
	}
	f <- s
	return nil
}

func (f fakeNotifier) want(t *testing.T, want string) {
	t.Helper()
	select {
	case got := <-f:
		if got != want {
			t.Fatalf("told %q, want %q", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("not told %q", want)
	}
}

func (f fakeNotifier) none(t *testing.T) {
	t.Helper()
	select {
	case got := <-f:
		t.Fatalf("told %q", got)
	case <-time.After(100 * time.Millisecond):
	}
}

func notifierOn(t *testing.T, r *Registry) fakeNotifier {
	t.Helper()
	f := make(fakeNotifier, 8)
	if err := r.Router().Register(Adapter{Protocol: ProtocolMQTT, SubDevices: f}); err != nil {
		t.Fatal(err)
	}
	return f
}

// A gateway with a session is told of the sub-devices created with its
// gateway_id and of their deletion; one without a session is not.
func TestSubDeviceChangesNotified(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	f := notifierOn(t, r)
	ctx := context.Background()
	mustProduct(t, r, "proj", "mq", "MQTT")
	create := func(node, gateway string) {
		t.Helper()
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "mq", NodeID: node, GatewayID: gateway}); err != nil {
			t.Fatal(err)
		}
	}
	create("gw", "")
	create("early", "mq_gw")
	f.none(t)
	if _, err := r.Connected(ctx, "mq_gw"); err != nil {
		t.Fatal(err)
	}
	create("s1", "mq_gw")
	f.want(t, "mq_gw added mq_s1/s1")
	create("direct", "")
	if err := r.DeleteDevice(ctx, "proj", "mq_direct"); err != nil {
		t.Fatal(err)
	}
	f.none(t)
	if err := r.DeleteDevice(ctx, "proj", "mq_s1"); err != nil {
		t.Fatal(err)
	}
	f.want(t, "mq_gw deleted mq_s1/s1")
}

// A sub-device deleted for not connecting in time is notified too.
func TestExpiredSubDeviceNotified(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	r, _ := newTestRegistry(t, clock)
	f := notifierOn(t, r)
	ctx := context.Background()
	mustProduct(t, r, "proj", "mq", "MQTT")
	for _, n := range []NewDevice{{NodeID: "gw"}, {NodeID: "s1", GatewayID: "mq_gw", Auth: AuthInfo{Timeout: 60}}} {
		n.ProjectID, n.ProductID = "proj", "mq"
		if _, err := r.CreateDevice(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.Connected(ctx, "mq_gw"); err != nil {
		t.Fatal(err)
	}
	clock.Advance(61 * time.Second)
	if n, err := r.SweepExpired(ctx); err != nil || n != 1 {
		t.Fatalf("swept %d: %v", n, err)
	}
	f.want(t, "mq_gw deleted mq_s1/s1")
}

// On a cluster the node holding the gateway's session tells it, whichever
// node made the change.
func TestClusterSubDeviceChangesReachTheGatewaysNode(t *testing.T) {
	a, b, _, _ := clusterNodes(t, nil)
	fa, fb := notifierOn(t, a), notifierOn(t, b)
	ctx := context.Background()
	mustProduct(t, a, "proj", "mq", "MQTT")
	if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "mq", NodeID: "gw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Connected(ctx, "mq_gw"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "mq", NodeID: "s1", GatewayID: "mq_gw"}); err != nil {
		t.Fatal(err)
	}
	fb.want(t, "mq_gw added mq_s1/s1")
	fa.none(t)
}
