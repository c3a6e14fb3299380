package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// A deadline written before those already swept past (a device with a
// shorter timeout than those before it, a command sent with a shorter
// answer time than its expiry) is still swept, whatever the engine does
// to skip the front of a deadline index.
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

// Sweeps racing with creates and a moving clock never skip a deadline:
// once the clock has passed them all, one sweep deletes every device that
// never connected.
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
