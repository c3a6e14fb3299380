package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"
)

func TestDeadlineFloor(t *testing.T) {
	type step struct {
		op string // read, raise, lower
		ns int64
	}
	for _, tc := range []struct {
		name  string
		steps []step
		want  int64
	}{
		{"unknown until a sweep raises it", []step{{"read", 0}}, math.MinInt64},
		{"raised to the first entry left", []step{{"read", 0}, {"raise", 100}}, 100},
		{"a write noted during the sweep caps the raise", []step{{"read", 0}, {"lower", 50}, {"raise", 100}}, 50},
		{"a write noted after the raise lowers it", []step{{"read", 0}, {"raise", 100}, {"lower", 50}}, 50},
		{"a write noted before the read was in the sweep's snapshot", []step{{"lower", 50}, {"read", 0}, {"raise", 100}}, 100},
		{"a later write above the floor leaves it", []step{{"read", 0}, {"raise", 100}, {"lower", 150}}, 100},
		{"nothing left, then a write", []step{{"read", 0}, {"raise", math.MaxInt64}, {"lower", 70}}, 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newDeadlineFloor(expiryPrefix)
			for _, s := range tc.steps {
				switch s.op {
				case "read":
					f.read()
				case "raise":
					f.raise(s.ns)
				case "lower":
					f.lower(s.ns)
				}
			}
			if f.ns != tc.want {
				t.Fatalf("floor %d, want %d", f.ns, tc.want)
			}
			from := f.read()
			if tc.want == math.MinInt64 && from != nil || tc.want != math.MinInt64 && !bytes.Equal(from, floorKey(expiryPrefix, tc.want)) {
				t.Fatalf("read %q", from)
			}
		})
	}
}

func floorKey(prefix []byte, ns int64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), prefix...), uint64(ns))
}

// Once a sweep has looked, the next seeks to the first deadline it left
// rather than reading the index from its start, where the deadlines
// deleted by activations lie.
func TestSweepSeeksPastDeletedDeadlines(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	r, rec := recordedRegistry(t, expiryPrefix, clock)
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	late, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "late", ProductID: "nb", Auth: AuthInfo{Timeout: 86400}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: fmt.Sprint("n", i), ProductID: "nb", Auth: AuthInfo{Timeout: 60}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Connected(ctx, d.DeviceID); err != nil {
			t.Fatal(err)
		}
	}
	clock.Advance(2 * time.Minute)
	for range 2 {
		if n, err := r.SweepExpired(ctx); err != nil || n != 0 {
			t.Fatalf("sweep: %d %v", n, err)
		}
	}
	if from, want := rec.lastFrom(), floorKey(expiryPrefix, late.ExpireAt.UnixNano()); !bytes.Equal(from, want) {
		t.Fatalf("second sweep read from %q, want %q", from, want)
	}
}

// A deadline written below the floor (a device with a shorter timeout
// than those before it, a command sent with a shorter answer time than
// its expiry) is still swept.
func TestSweepsFindDeadlinesBelowTheFloor(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// far and near write a deadline a day and 5 s ahead; check says
		// whether near's was swept.
		far, near func(t *testing.T, r *Registry) string
		sweep     func(r *Registry) (int, error)
		check     func(t *testing.T, r *Registry, near string)
	}{{
		name: "device expiry",
		far: func(t *testing.T, r *Registry) string {
			return mustCreate(t, r, NewDevice{ProjectID: "proj", NodeID: "far", ProductID: "nb", Auth: AuthInfo{Timeout: 86400}})
		},
		near: func(t *testing.T, r *Registry) string {
			return mustCreate(t, r, NewDevice{ProjectID: "proj", NodeID: "near", ProductID: "nb", Auth: AuthInfo{Timeout: 5}})
		},
		sweep: func(r *Registry) (int, error) { return r.SweepExpired(ctx) },
		check: func(t *testing.T, r *Registry, near string) {
			if _, err := r.Device(ctx, near); !errors.Is(err, ErrNotFound) {
				t.Fatalf("the device past its deadline is still there (%v)", err)
			}
		},
	}, {
		name: "async command",
		far: func(t *testing.T, r *Registry) string {
			return mustCommand(t, r, 86400)
		},
		near: func(t *testing.T, r *Registry) string {
			return mustCommand(t, r, 5)
		},
		sweep: func(r *Registry) (int, error) { return r.SweepAsyncCommands(ctx) },
		check: func(t *testing.T, r *Registry, near string) {
			if c, err := r.AsyncCommand(ctx, "proj", "nb_n1", near); err != nil || c.Status != AsyncExpired {
				t.Fatalf("the command past its expiry: %+v %v", c, err)
			}
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r, clock := newAsyncFixture(t)
			tc.far(t, r)
			if n, err := tc.sweep(r); err != nil || n != 0 {
				t.Fatalf("first sweep: %d %v", n, err)
			}
			near := tc.near(t, r)
			clock.Advance(6 * time.Second)
			if n, err := tc.sweep(r); err != nil || n != 1 {
				t.Fatalf("sweep after the near deadline: %d %v", n, err)
			}
			tc.check(t, r, near)
		})
	}
}

func mustCreate(t *testing.T, r *Registry, n NewDevice) string {
	t.Helper()
	d, err := r.CreateDevice(context.Background(), n)
	if err != nil {
		t.Fatal(err)
	}
	return d.DeviceID
}

func mustCommand(t *testing.T, r *Registry, expire int64) string {
	t.Helper()
	c, err := r.CreateAsyncCommand(context.Background(), "proj", "nb_n1", NewAsyncCommand{Paras: json.RawMessage(`{}`), ExpireTime: expire})
	if err != nil {
		t.Fatal(err)
	}
	return c.CommandID
}

// Sweeps racing with creates and a moving clock never raise the floor
// past a deadline: once the clock has passed them all, one sweep deletes
// every device that never connected.
func TestSweepFloorRacingCreates(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)}
	r, _ := newTestRegistry(t, clock)
	ctx := context.Background()
	mustProduct(t, r, "proj", "nb", "CoAP")
	far := mustCreate(t, r, NewDevice{ProjectID: "proj", NodeID: "far", ProductID: "nb", Auth: AuthInfo{Timeout: 86400}})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // the sweeper
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := r.SweepExpired(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // time passes
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				clock.Advance(time.Second)
			}
		}
	}()
	var writers sync.WaitGroup
	for w := range 4 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			for i := range 100 {
				// Timeouts that shrink, so that new deadlines keep falling
				// below those already written.
				n := NewDevice{ProjectID: "proj", NodeID: fmt.Sprintf("w%d-%d", w, i), ProductID: "nb", Auth: AuthInfo{Timeout: int64(60 - i/2)}}
				if _, err := r.CreateDevice(ctx, n); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	clock.Advance(2 * time.Minute)
	if _, err := r.SweepExpired(ctx); err != nil {
		t.Fatal(err)
	}
	l, err := r.ListDevices(ctx, "proj", DeviceFilter{}, Page{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Devices) != 1 || l.Devices[0].DeviceID != far {
		var left []string
		for _, d := range l.Devices {
			left = append(left, d.NodeID)
		}
		t.Fatalf("left after the last sweep: %v", left)
	}
}
