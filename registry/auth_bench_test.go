package registry

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// The benchmarks of this file answer the sizing questions of the fleet
// benchmarks (BENCHMARKS.md): do the authentication hot paths stay flat
// from 10,000 to 1,000,000 devices (IOTGATE_BENCH_MAX=1000000), how long
// does a registry holding that many take to start, what does the expiry
// sweep cost, and how much does group commit buy over one durable
// transaction per create.

// benchFleet is an on-disk registry filled with n devices through the
// normal write path: even i a CoAP device with a hex secret (node id
// imei%09d, a PSK identity), odd i a CERTIFICATES device with a SHA-256
// fingerprint. Every device has the longest unconnected-registration
// timeout, so the expiry index holds n deadlines, none of them due.
type benchFleet struct {
	n     int
	dir   string
	key   []byte
	store kv.Store
	reg   *Registry
	skew  atomic.Int64 // nanoseconds added to the clock
	shut  bool
}

// close closes the registry and the store once.
func (f *benchFleet) close() {
	if !f.shut {
		f.shut = true
		f.reg.Close()
		f.store.Close()
	}
}

func (f *benchFleet) now() time.Time { return time.Now().Add(time.Duration(f.skew.Load())) }

func (f *benchFleet) options(s kv.Store, cacheEntries int) Options {
	return Options{Store: s, MasterKey: f.key, Now: f.now, CacheEntries: cacheEntries,
		// One product holds half the fleet: lift its quota.
		Quotas: Quotas{DevicesPerProduct: int64(f.n) + 1}}
}

// cacheFor sizes the cache to hold the whole fleet (an index entry and a
// record per device), as an operator would set cache_entries for it.
func cacheFor(n int) int { return 4 * n }

func benchNode(i int) string { return fmt.Sprintf("imei%09d", i) }

func benchFingerprint(i int) string {
	s := sha256.Sum256([]byte(benchNode(i)))
	return hex.EncodeToString(s[:])
}

func benchDeviceID(i int) string {
	if i%2 == 0 {
		return "nb_" + benchNode(i)
	}
	return "x509_" + benchNode(i)
}

const benchSecret = "00112233445566778899aabbccddeeff"

func newBenchFleet(b *testing.B, n int) *benchFleet {
	b.Helper()
	f := &benchFleet{n: n, dir: b.TempDir(), key: bytes.Repeat([]byte{1}, 32)}
	s, err := badgerkv.Open(badgerkv.Options{Dir: f.dir, Queues: Queues()})
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(f.options(s, cacheFor(n)))
	if err != nil {
		b.Fatal(err)
	}
	f.store, f.reg = s, r
	b.Cleanup(f.close)
	ctx := context.Background()
	for _, p := range []Product{
		{ProjectID: "p", ProductID: "nb", Name: "nb", DeviceType: "x", ProtocolType: "CoAP"},
		{ProjectID: "p", ProductID: "x509", Name: "x509", DeviceType: "x", ProtocolType: "MQTT"},
	} {
		if _, err := r.CreateProduct(ctx, p); err != nil {
			b.Fatal(err)
		}
	}
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 256 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				nd := NewDevice{ProjectID: "p", ProductID: "nb", NodeID: benchNode(i),
					Auth: AuthInfo{Secret: benchSecret, Timeout: MaxTimeout}}
				if i%2 == 1 {
					nd.ProductID = "x509"
					nd.Auth = AuthInfo{Type: AuthCertificates, Fingerprint: benchFingerprint(i), Timeout: MaxTimeout}
				}
				if _, err := r.CreateDevice(ctx, nd); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
	b.Logf("filled %d devices in %v (%.0f creates/s)", n, time.Since(start).Round(time.Millisecond), float64(n)/time.Since(start).Seconds())
	return f
}

// warm loads every device and index entry into the cache, from one
// goroutine per core.
func (f *benchFleet) warm(b *testing.B) {
	ctx := context.Background()
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < f.n; i += workers {
				_, err := f.reg.Device(ctx, benchDeviceID(i))
				if err == nil && i%2 == 0 {
					_, err = f.reg.DeviceByNodeID(ctx, benchNode(i))
				} else if err == nil {
					_, err = f.reg.DeviceByFingerprint(ctx, benchFingerprint(i))
				}
				if err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if b.Failed() {
		b.FailNow()
	}
}

// BenchmarkAuthPaths measures, at each fleet size, every lookup a
// protocol makes to authenticate a device, through a cache sized to the
// fleet (warmed) and straight from the store (cache disabled); then a
// restart of the registry and the expiry sweep. Flat ns/op from the
// smallest size to the largest means O(1).
//
//   - device_id: MQTT (IoTDA ClientId and username name the device);
//   - node_id: LwM2M NoSec (the endpoint name);
//   - fingerprint: MQTTS with a client certificate;
//   - mqtt_secret: the whole MQTT secret check, the device_id lookup and
//     the HMAC-SHA256 of both secrets compared in constant time;
//   - psk: the DTLS PSK callback, the node_id lookup and the hex-decoded
//     key (what lwm2m's pskLookup does);
//   - open: closing the store and starting again as cmd/iotgate does:
//     open Badger, start the registry, sweep expired devices, first
//     lookup;
//   - sweep/idle: SweepExpired with n deadlines and none due (every
//     second in production);
//   - sweep/due=256: SweepExpired deleting 256 devices that just expired.
func BenchmarkAuthPaths(b *testing.B) {
	ctx := context.Background()
	for _, n := range benchSizes() {
		f := newBenchFleet(b, n)
		uncached, err := New(f.options(f.store, -1))
		if err != nil {
			b.Fatal(err)
		}
		f.warm(b)
		// Spread the lookups over the fleet; even indexes are CoAP
		// devices, odd ones certificate devices.
		pick := func(i, parity int) int { return ((i*7919)%(n/2))*2 + parity }
		for _, v := range []struct {
			name string
			r    *Registry
		}{{"cached", f.reg}, {"store", uncached}} {
			b.Run(fmt.Sprintf("device_id/%s/n=%d", v.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := v.r.Device(ctx, benchDeviceID(pick(i, i&1))); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("node_id/%s/n=%d", v.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := v.r.DeviceByNodeID(ctx, benchNode(pick(i, 0))); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("fingerprint/%s/n=%d", v.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					if _, err := v.r.DeviceByFingerprint(ctx, benchFingerprint(pick(i, 1))); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run(fmt.Sprintf("mqtt_secret/%s/n=%d", v.name, n), func(b *testing.B) {
				const ts = "2024010100"
				proof := HMACProof{Hash: sha256.New, Data: []byte(ts)}
				mac := proof.sum(benchSecret)
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					d, err := v.r.Device(ctx, benchDeviceID(pick(i, 0)))
					if err != nil {
						b.Fatal(err)
					}
					if _, ok := d.MatchSecret(proof, mac); !ok {
						b.Fatal("secret did not match")
					}
				}
			})
			b.Run(fmt.Sprintf("psk/%s/n=%d", v.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					d, err := v.r.DeviceByNodeID(ctx, benchNode(pick(i, 0)))
					if err != nil {
						b.Fatal(err)
					}
					if k, err := hex.DecodeString(d.Auth.Secret); err != nil || len(k) != 16 {
						b.Fatal("bad psk", err)
					}
				}
			})
		}
		uncached.Close()
		b.Run(fmt.Sprintf("sweep/idle/n=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if k, err := f.reg.SweepExpired(ctx); err != nil || k != 0 {
					b.Fatal(k, err)
				}
			}
		})
		b.Run(fmt.Sprintf("sweep/due=256/n=%d", n), func(b *testing.B) {
			const due = 256
			var made int
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				for j := 0; j < due; j++ {
					made++
					if _, err := f.reg.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "nb", NodeID: fmt.Sprintf("due%09d", made),
						Auth: AuthInfo{Secret: benchSecret, Timeout: 1}}); err != nil {
						b.Fatal(err)
					}
				}
				f.skew.Add(int64(2 * time.Second))
				b.StartTimer()
				if k, err := f.reg.SweepExpired(ctx); err != nil || k != due {
					b.Fatal(k, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*due), "ns/device")
		})
		b.Run(fmt.Sprintf("open/n=%d", n), func(b *testing.B) {
			for b.Loop() {
				f.reg.Close()
				if err := f.store.Close(); err != nil {
					b.Fatal(err)
				}
				s, err := badgerkv.Open(badgerkv.Options{Dir: f.dir, Queues: Queues()})
				if err != nil {
					b.Fatal(err)
				}
				r, err := New(f.options(s, cacheFor(n)))
				if err != nil {
					b.Fatal(err)
				}
				f.store, f.reg = s, r
				if _, err := r.SweepExpired(ctx); err != nil {
					b.Fatal(err)
				}
				if _, err := r.Device(ctx, benchDeviceID(n-1)); err != nil {
					b.Fatal(err)
				}
			}
		})
		f.close() // free this size's store before filling the next
	}
}

// BenchmarkCreateBatch compares durable device creation from 64
// concurrent callers with group commit (MaxBatch 256, the default) and
// without it (MaxBatch 1: one durable transaction per create, the naive
// baseline). The ratio of their ns/op is what group commit buys.
func BenchmarkCreateBatch(b *testing.B) {
	for _, batch := range []int{1, 256} {
		b.Run(fmt.Sprintf("max_batch=%d", batch), func(b *testing.B) {
			s, err := badgerkv.Open(badgerkv.Options{Dir: b.TempDir(), Queues: Queues(), MaxBatch: batch})
			if err != nil {
				b.Fatal(err)
			}
			r, err := New(Options{Store: s, MasterKey: bytes.Repeat([]byte{1}, 32)})
			if err != nil {
				b.Fatal(err)
			}
			defer func() { r.Close(); s.Close() }()
			ctx := context.Background()
			if _, err := r.CreateProduct(ctx, Product{ProjectID: "p", ProductID: "m", Name: "m", DeviceType: "x", ProtocolType: "MQTT"}); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.SetParallelism(32) // 64 goroutines on 2 cores
			b.ReportAllocs()
			b.ResetTimer() // not the store's opening and first write
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: fmt.Sprintf("n%d", next.Add(1))}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
