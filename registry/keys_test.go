package registry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// A shared counter is spread over shards by the node that writes it
// (so two nodes' creates do not contend for one key), read as their sum;
// a count kept by earlier versions in the unsharded key still counts, and
// is counted down by deletes of the devices in it.
func TestShardedCounters(t *testing.T) {
	a, b, s := twoNodes(t, nil)
	ctx := context.Background()
	k := productCountKey("prod")
	// An earlier version's count of 3.
	if err := a.write(ctx, func(w Writer) error { return w.Set(k, []byte("3")) }); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		r := a
		if i%2 == 1 {
			r = b
		}
		if err := r.write(ctx, func(w Writer) error { return addCount(w, k, 1) }); err != nil {
			t.Fatal(err)
		}
	}
	// Two of the old devices are deleted through b: its shard goes to 18.
	for range 2 {
		if err := b.write(ctx, func(w Writer) error { return addCount(w, k, -1) }); err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	shards := map[string]string{}
	err := s.View(ctx, func(rd Reader) error {
		var err error
		if n, err = readCount(rd, k); err != nil {
			return err
		}
		return rd.Scan(append(k, sep), nil, false, func(key, v []byte) (bool, error) {
			shards[string(key[len(key)-1:])] = string(v)
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 41 {
		t.Fatalf("count %d, want 41", n)
	}
	want := map[string]string{string(a.countShard): "20", string(b.countShard): "18"}
	if fmt.Sprint(shards) != fmt.Sprint(want) {
		t.Fatalf("shards %v, want each node's count in its own: %v", shards, want)
	}
	// A counter back at zero in a shard leaves no key there.
	for range 18 {
		if err := b.write(ctx, func(w Writer) error { return addCount(w, k, -1) }); err != nil {
			t.Fatal(err)
		}
	}
	err = s.View(ctx, func(rd Reader) error {
		_, err := rd.Get(append(append(k[:len(k):len(k)], sep), b.countShard))
		if !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("node-b's shard at zero: %v, want no key", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Creates and deletes keep a product's count, and the project's, whatever
// shards they land in.
func TestDeviceCountsAcrossShards(t *testing.T) {
	r, _ := newTestRegistry(t, nil)
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	var ids []string
	for i := range 50 {
		d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: fmt.Sprint("n", i)})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, d.DeviceID)
	}
	for _, id := range ids[:20] {
		if err := r.DeleteDevice(ctx, "proj", id); err != nil {
			t.Fatal(err)
		}
	}
	l, err := r.ListDevices(ctx, "proj", DeviceFilter{}, Page{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if l.Count != 30 {
		t.Fatalf("project count %d, want 30", l.Count)
	}
	l, err = r.ListDevices(ctx, "proj", DeviceFilter{ProductID: "prod"}, Page{Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if l.Count != 30 {
		t.Fatalf("product count %d, want 30", l.Count)
	}
}

// Creates far from their product's quota skip the exact count in their
// transaction; near it, every create counts exactly, so the quota holds.
func TestQuotaRoom(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)}
	r, _ := newTestRegistry(t, clock)
	r.quotas.DevicesPerProduct = 20_000 // margin 10,000
	ctx := context.Background()
	mustProduct(t, r, "proj", "prod", "MQTT")
	if r.mustCount(ctx, "prod") {
		t.Fatal("an empty product counts exactly")
	}
	// 19,999 devices (an earlier version's unsharded count).
	if err := r.write(ctx, func(w Writer) error { return w.Set(productCountKey("prod"), []byte("19999")) }); err != nil {
		t.Fatal(err)
	}
	if r.mustCount(ctx, "prod") {
		t.Fatal("the count read a moment ago was not reused")
	}
	clock.Advance(2 * time.Second)
	if !r.mustCount(ctx, "prod") {
		t.Fatal("a product near its quota does not count exactly")
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "last"}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", ProductID: "prod", NodeID: "over"}); !errors.Is(err, ErrQuota) {
		t.Fatalf("create over the quota: %v", err)
	}
}
