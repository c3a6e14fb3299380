package api

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// pingCounter counts the store probes.
type pingCounter struct {
	Registry
	pings atomic.Int32
}

func (p *pingCounter) Ping(ctx context.Context) error { p.pings.Add(1); return p.Registry.Ping(ctx) }

type fakeBus struct{ err atomic.Pointer[error] }

func (b *fakeBus) Healthy() error {
	if e := b.err.Load(); e != nil {
		return *e
	}
	return nil
}

func TestHealthz(t *testing.T) {
	reg, st := testRegistry(t)
	regs := &pingCounter{Registry: reg}
	bus := &fakeBus{}
	s := New(Options{Registry: regs, Router: reg.Router(), Node: "node-1", Bus: bus})
	expire := func() { s.health.mu.Lock(); s.health.at = time.Time{}; s.health.mu.Unlock() }
	for _, tc := range []struct {
		name   string
		setup  func()
		status int
		want   map[string]any
	}{
		{"starting", func() {}, 503, map[string]any{"status": "starting", "node": "node-1"}},
		{"ready", func() { s.SetReady(true) }, 200,
			map[string]any{"status": "ok", "node": "node-1", "store": "ok", "bus": "ok"}},
		{"bus down", func() { e := errors.New("nats: no servers"); bus.err.Store(&e); expire() }, 503,
			map[string]any{"status": "unavailable", "node": "node-1", "store": "ok", "bus": "unreachable"}},
		{"bus back", func() { bus.err.Store(nil); expire() }, 200,
			map[string]any{"status": "ok", "node": "node-1", "store": "ok", "bus": "ok"}},
		{"store down", func() { st.Close(); expire() }, 503,
			map[string]any{"status": "unavailable", "node": "node-1", "store": "unreachable", "bus": "ok"}},
	} {
		tc.setup()
		st, out := call(s, "", "GET", "/healthz", "")
		if st != tc.status || len(out) != len(tc.want) {
			t.Errorf("%s: %d %v, want %d %v", tc.name, st, out, tc.status, tc.want)
			continue
		}
		for k, v := range tc.want {
			if out[k] != v {
				t.Errorf("%s: %d %v, want %d %v", tc.name, st, out, tc.status, tc.want)
			}
		}
	}
}

// A single node reports the bus disabled; checks in quick succession
// share one probe of the store.
func TestHealthzSingleNodeProbesOnce(t *testing.T) {
	_, reg := newTestServer(t)
	regs := &pingCounter{Registry: reg}
	s := New(Options{Registry: regs, Router: reg.Router()})
	s.SetReady(true)
	for range 20 {
		st, out := call(s, "", "GET", "/healthz", "")
		if st != 200 || out["bus"] != "disabled" || out["store"] != "ok" {
			t.Fatalf("%d %v", st, out)
		}
	}
	if n := regs.pings.Load(); n != 1 {
		t.Fatalf("%d store probes for 20 checks within %s, want 1", n, healthProbeAge)
	}
}
