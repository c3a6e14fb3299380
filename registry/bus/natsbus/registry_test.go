package natsbus_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/bus/natsbus/natstest"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// Two registries on one store, each with its own bus over one NATS: a
// device frozen, unfrozen or deleted through one is seen so through the
// other's cached lookups within a second. Without the bus the other
// node's cache stays stale (the control case), so the test measures the
// bus, not a store read.
func TestRegistriesSeeEachOthersWritesOverNATS(t *testing.T) {
	srv := natstest.Start(t)
	for _, tc := range []struct {
		name  string
		bus   bool
		stale bool // the other node still sees the old value
	}{
		{"without a bus the cache is stale", false, true},
		{"natsbus invalidates within 1 s", true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			openNode := func(node string) *registry.Registry {
				o := registry.Options{Store: s, MasterKey: bytes.Repeat([]byte{7}, 32), Node: node,
					Lease: registry.NewStoreLease(s, node, nil)}
				if tc.bus {
					b := open(t, srv.URL(), node)
					waitHealthy(t, b, true, 5*time.Second)
					o.Invalidator = b
				}
				r, err := registry.New(o)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { r.Close() })
				return r
			}
			a, b := openNode("node-a"), openNode("node-b")
			ctx := context.Background()
			if _, err := a.CreateProduct(ctx, registry.Product{ProjectID: "proj", ProductID: "prod", Name: "P",
				DeviceType: "Meter", ProtocolType: "MQTT"}); err != nil {
				t.Fatal(err)
			}
			d, err := a.CreateDevice(ctx, registry.NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "n1"})
			if err != nil {
				t.Fatal(err)
			}
			frozen := func(r *registry.Registry) (bool, error) {
				got, err := r.DeviceByProductNode(ctx, "prod", "n1")
				if err != nil {
					return false, err
				}
				return got.Frozen, nil
			}
			// b caches the device through its hot-path lookup.
			if f, err := frozen(b); err != nil || f {
				t.Fatalf("b: frozen=%v %v", f, err)
			}

			// within waits up to 1 s for b to see want; it reports whether it did.
			within := func(r *registry.Registry, want bool) bool {
				deadline := time.Now().Add(time.Second)
				for {
					if f, err := frozen(r); err == nil && f == want {
						return true
					}
					if time.Now().After(deadline) {
						return false
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if err := a.SetFrozen(ctx, "proj", d.DeviceID, true); err != nil {
				t.Fatal(err)
			}
			if seen := within(b, true); seen == tc.stale {
				t.Fatalf("b sees a's freeze within 1 s: %v", seen)
			}
			if tc.stale {
				return
			}
			if err := b.SetFrozen(ctx, "proj", d.DeviceID, false); err != nil {
				t.Fatal(err)
			}
			if !within(a, false) {
				t.Fatal("a does not see b's unfreeze within 1 s")
			}
			if err := a.DeleteDevice(ctx, "proj", d.DeviceID); err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Second)
			for {
				if _, err := b.DeviceByProductNode(ctx, "prod", "n1"); err != nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("b still finds the device a deleted after 1 s")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}
