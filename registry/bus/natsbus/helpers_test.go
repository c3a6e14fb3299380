package natsbus_test

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/bus/natsbus"
)

// open opens a bus for node on url, closed when the test ends, with
// quick reconnection so outages heal within the tests' bounds.
func open(t *testing.T, url, node string, tweak ...func(*natsbus.Options)) *natsbus.Bus {
	t.Helper()
	o := natsbus.Options{URL: url, Node: node, ReconnectWait: 50 * time.Millisecond,
		ConnectTimeout: 500 * time.Millisecond, DrainTimeout: 2 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if testing.Verbose() {
		o.Logger = slog.Default()
	}
	for _, f := range tweak {
		f(&o)
	}
	b, err := natsbus.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// recorder collects what a Subscribe fn is called with.
type recorder struct {
	mu      sync.Mutex
	keys    []string
	drops   int
	changed chan struct{}
}

func subscribe(b *natsbus.Bus) *recorder {
	r := &recorder{changed: make(chan struct{}, 1)}
	b.Subscribe(func(keys []string) {
		r.mu.Lock()
		if keys == nil {
			r.drops++
		}
		r.keys = append(r.keys, keys...)
		r.mu.Unlock()
		select {
		case r.changed <- struct{}{}:
		default:
		}
	})
	return r
}

func (r *recorder) snapshot() (keys []string, drops int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.keys), r.drops
}

// await waits up to d for cond on what was recorded.
func (r *recorder) await(t *testing.T, d time.Duration, what string, cond func(keys []string, drops int) bool) {
	t.Helper()
	deadline := time.After(d)
	for {
		if cond(r.snapshot()) {
			return
		}
		select {
		case <-r.changed:
		case <-deadline:
			keys, drops := r.snapshot()
			t.Fatalf("after %v, no %s: %d drop-alls, keys %q", d, what, drops, shorten(keys))
		}
	}
}

func (r *recorder) reset() {
	r.mu.Lock()
	r.keys, r.drops = nil, 0
	r.mu.Unlock()
}

func shorten(keys []string) []string {
	if len(keys) > 10 {
		return append(keys[:10:10], "...")
	}
	return keys
}

func hasKey(k string) func([]string, int) bool {
	return func(keys []string, _ int) bool { return slices.Contains(keys, k) }
}

// waitHealthy waits until the bus's health is as wanted.
func waitHealthy(t *testing.T, b *natsbus.Bus, healthy bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for (b.Healthy() == nil) != healthy {
		if time.Now().After(deadline) {
			t.Fatalf("after %v the bus is not healthy=%v: %v", d, healthy, b.Healthy())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// publishUntil publishes key from one bus until rec has it: in a
// cluster, a new subscription takes a moment to reach every server.
func publishUntil(t *testing.T, from *natsbus.Bus, rec *recorder, key string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		from.Publish([]string{key})
		select {
		case <-rec.changed:
		case <-time.After(100 * time.Millisecond):
		}
		if keys, _ := rec.snapshot(); slices.Contains(keys, key) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q not received after 5 s", key)
		}
	}
}
