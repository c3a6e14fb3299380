package registry

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// benchSizes are the fleet sizes the lookup benchmarks compare; set
// IOTGATE_BENCH_MAX=1000000 to include a million devices (slow to fill).
func benchSizes() []int {
	max := 100_000
	if v, err := strconv.Atoi(os.Getenv("IOTGATE_BENCH_MAX")); err == nil && v > 0 {
		max = v
	}
	var out []int
	for n := 10_000; n <= max; n *= 10 {
		out = append(out, n)
	}
	return out
}

// filledRegistry opens an on-disk registry holding n devices of one CoAP
// product, created through the normal write path.
func filledRegistry(b *testing.B, n int) (*Registry, kv.Store) {
	b.Helper()
	s, err := badgerkv.Open(badgerkv.Options{Dir: b.TempDir(), Queues: Queues()})
	if err != nil {
		b.Fatal(err)
	}
	// One product holds the whole fleet, so lift its device quota.
	r, err := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{1}, 32), Quotas: Quotas{DevicesPerProduct: int64(n)}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close(); s.Close() })
	ctx := context.Background()
	if _, err := r.CreateProduct(ctx, Product{ProjectID: "p", ProductID: "nb", Name: "nb", DeviceType: "x", ProtocolType: "CoAP"}); err != nil {
		b.Fatal(err)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 256; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				_, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "nb", NodeID: fmt.Sprintf("imei%09d", i),
					Auth: AuthInfo{Secret: "00112233445566778899aabbccddeeff"}})
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	return r, s
}

// BenchmarkLookup measures the hot-path lookups at several fleet sizes,
// through the cache (warmed) and straight from the store; O(1) means the
// ns/op stay flat as the fleet grows.
func BenchmarkLookup(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes() {
		cached, s := filledRegistry(b, n)
		uncached, err := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{1}, 32), CacheEntries: -1})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { uncached.Close() })
		ids := make([]string, n)
		nodes := make([]string, n)
		for i := range ids {
			nodes[i] = fmt.Sprintf("imei%09d", i)
			ids[i] = "nb_" + nodes[i]
		}
		for i := range ids { // warm the cache
			if _, err := cached.DeviceByNodeID(ctx, nodes[i]); err != nil {
				b.Fatal(err)
			}
		}
		for _, v := range []struct {
			name string
			r    *Registry
		}{{"cached", cached}, {"store", uncached}} {
			b.Run(fmt.Sprintf("device_id/%s/n=%d", v.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := v.r.Device(ctx, ids[(i*7919)%n]); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("node_id/%s/n=%d", v.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := v.r.DeviceByNodeID(ctx, nodes[(i*7919)%n]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// BenchmarkReconnect measures the registry's share of a reconnect storm:
// an authentication lookup, Connected and Disconnected for an activated
// device, with the periodic status flush that follows.
func BenchmarkReconnect(b *testing.B) {
	const n = 10_000
	r, _ := filledRegistry(b, n)
	ctx := context.Background()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("nb_imei%09d", i)
		if _, err := r.Connected(ctx, ids[i]); err != nil { // activate
			b.Fatal(err)
		}
	}
	if err := r.flushStatus(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		id := ids[i%n]
		if _, err := r.Device(ctx, id); err != nil {
			b.Fatal(err)
		}
		s, err := r.Connected(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		r.Disconnected(id, s)
		if i%1000 == 999 { // Run flushes about once a second
			if err := r.flushStatus(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkSweepAfterActivations is an idle expiry sweep (nothing due)
// after n devices created with a deadline have connected, which deletes
// their deadlines: what the sweep still reads of those (Badger keeps
// their tombstones until a compaction) is what grows with n.
func BenchmarkSweepAfterActivations(b *testing.B) {
	for _, n := range []int{0, 1000, 20000} {
		b.Run(fmt.Sprintf("activated=%d", n), func(b *testing.B) {
			clock := &fakeClock{t: time.Now()}
			r, _ := newTestRegistry(b, clock)
			ctx := context.Background()
			mustProduct(b, r, "p", "nb", "CoAP")
			// One device that never connects keeps a deadline ahead.
			if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "nb", NodeID: "late",
				Auth: AuthInfo{Timeout: 86400}}); err != nil {
				b.Fatal(err)
			}
			for i := range n {
				d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "nb", NodeID: fmt.Sprintf("n%06d", i),
					Auth: AuthInfo{Timeout: 60}})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.Connected(ctx, d.DeviceID); err != nil {
					b.Fatal(err)
				}
			}
			clock.Advance(2 * time.Minute)
			if _, err := r.SweepExpired(ctx); err != nil { // the first after start-up reads from the start
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if k, err := r.SweepExpired(ctx); err != nil || k != 0 {
					b.Fatal(k, err)
				}
			}
		})
	}
}
