package registry

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// A shared counter is spread over shards by the device it counts, read
// as their sum, and a count kept by earlier versions in the unsharded key
// still counts (and is counted down by deletes of the devices in it).
func TestShardedCounters(t *testing.T) {
	r, s := newTestRegistry(t, nil)
	ctx := context.Background()
	k := productCountKey("prod")
	// An earlier version's count of 3.
	if err := r.write(ctx, func(w Writer) error { return w.Set(k, []byte("3")) }); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		if err := r.write(ctx, func(w Writer) error { return addCount(w, k, fmt.Sprint("dev-", i), 1) }); err != nil {
			t.Fatal(err)
		}
	}
	// Two of the old devices are deleted: their shards go below zero.
	for _, id := range []string{"old-1", "old-2"} {
		if err := r.write(ctx, func(w Writer) error { return addCount(w, k, id, -1) }); err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	shards := 0
	err := s.View(ctx, func(rd Reader) error {
		var err error
		if n, err = readCount(rd, k); err != nil {
			return err
		}
		return rd.Scan(append(k, sep), nil, false, func(_, _ []byte) (bool, error) { shards++; return true, nil })
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != 41 {
		t.Fatalf("count %d, want 41", n)
	}
	if shards < 8 || shards > counterShards {
		t.Fatalf("40 devices counted in %d shards", shards)
	}
	// A counter back at zero in a shard leaves no key there.
	if err := r.write(ctx, func(w Writer) error { return addCount(w, k, "dev-0", -1) }); err != nil {
		t.Fatal(err)
	}
	if err := r.write(ctx, func(w Writer) error { return addCount(w, k, "dev-0", 1) }); err != nil {
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
