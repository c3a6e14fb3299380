package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// slotHolders lists the devices group's slots record names, expired or
// not.
func slotHolders(t *testing.T, s kv.Store, group string) []string {
	t.Helper()
	var out []string
	err := s.View(context.Background(), func(rd Reader) error {
		slots, err := readFirmwareSlots(rd, group)
		if err != nil {
			return err
		}
		for dev := range slots.Holders {
			out = append(out, dev)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// A task's download slots: up to the limit, then refused; another task
// counts its own; taking again renews rather than takes a second;
// releasing frees one; an expired slot is free to take. A batch task's
// jobs (one a device) share the task's slots.
func TestFirmwareSlots(t *testing.T) {
	clock := &fakeClock{t: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}
	r, s := newTestRegistry(t, clock)
	ctx := context.Background()
	const ttl = time.Minute
	steps := []struct {
		name      string
		advance   time.Duration // the clock moves on first
		release   bool          // release rather than acquire
		task, job string
		device    string
		want      bool
		holders   []string // the group's record afterwards; nil: not checked
	}{
		{name: "first", job: "u1", device: "d1", want: true},
		{name: "second", job: "u1", device: "d2", want: true, holders: []string{"d1", "d2"}},
		{name: "one past the limit", job: "u1", device: "d3", want: false, holders: []string{"d1", "d2"}},
		{name: "another job has its own", job: "u2", device: "d3", want: true},
		{name: "a holder again", job: "u1", device: "d1", want: true, holders: []string{"d1", "d2"}},
		{name: "still full", job: "u1", device: "d3", want: false},
		{name: "release", release: true, job: "u1", device: "d1", holders: []string{"d2"}},
		{name: "freed slot taken", job: "u1", device: "d3", want: true, holders: []string{"d2", "d3"}},
		{name: "full again", job: "u1", device: "d4", want: false},
		{name: "renewed", advance: 30 * time.Second, job: "u1", device: "d2", want: true},
		{name: "not yet expired", advance: 29 * time.Second, job: "u1", device: "d4", want: false},
		{name: "expired slot taken over", advance: time.Second, job: "u1", device: "d4", want: true, holders: []string{"d2", "d4"}},
		{name: "the renewed one lives on", job: "u1", device: "d5", want: false},
		{name: "release without a slot", release: true, job: "u1", device: "d5", holders: []string{"d2", "d4"}},
		{name: "last releases", release: true, job: "u2", device: "d3", holders: []string{}},
		{name: "a batch task's first job", task: "t1", job: "j1", device: "x1", want: true},
		{name: "its second job", task: "t1", job: "j2", device: "x2", want: true},
		{name: "its third job shares the task's slots", task: "t1", job: "j3", device: "x3", want: false, holders: []string{"x1", "x2"}},
		{name: "another task has its own", task: "t2", job: "j4", device: "x3", want: true},
	}
	for _, st := range steps {
		clock.Advance(st.advance)
		d := FirmwareDelivery{UpgradeID: st.job, TaskID: st.task, DeviceID: st.device}
		if st.release {
			if err := r.ReleaseFirmwareSlot(ctx, d); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		} else {
			got, err := r.AcquireFirmwareSlot(ctx, d, 2, ttl)
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			if got != st.want {
				t.Fatalf("%s: %s of %s acquired %v, want %v (holders %v)", st.name, st.device, d.SlotGroup(), got, st.want, slotHolders(t, s, d.SlotGroup()))
			}
		}
		if st.holders != nil {
			if h := slotHolders(t, s, d.SlotGroup()); !slices.Equal(h, st.holders) && len(h)+len(st.holders) > 0 {
				t.Fatalf("%s: %s's holders %v, want %v", st.name, d.SlotGroup(), h, st.holders)
			}
		}
	}
	// A group none of whose devices downloads keeps no record.
	err := s.View(ctx, func(rd Reader) error {
		if _, err := rd.Get(firmwareSlotsKey(FirmwareDelivery{UpgradeID: "u2"}.SlotGroup())); !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("u2's record with no slot held: %v, want none", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		limit int
		ttl   time.Duration
	}{{0, ttl}, {1, 0}} {
		var ve *ValidationError
		if _, err := r.AcquireFirmwareSlot(ctx, FirmwareDelivery{UpgradeID: "u1", DeviceID: "d9"}, bad.limit, bad.ttl); !errors.As(err, &ve) {
			t.Fatalf("limit %d, ttl %v: %v, want a ValidationError", bad.limit, bad.ttl, err)
		}
	}
}

// Two nodes on one store taking and giving back slots of one job at once
// never have more than the limit held between them.
func TestFirmwareSlotsAcrossNodes(t *testing.T) {
	a, b, s := twoNodes(t, nil)
	ctx := context.Background()
	const limit, workers, rounds = 3, 8, 15
	var holding, most atomic.Int32
	var admitted atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		r := a
		if w%2 == 1 {
			r = b
		}
		d := FirmwareDelivery{UpgradeID: "job", DeviceID: fmt.Sprintf("dev%d", w)}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				ok, err := r.AcquireFirmwareSlot(ctx, d, limit, time.Hour)
				if err != nil {
					errs <- err
					return
				}
				if !ok {
					time.Sleep(time.Millisecond)
					continue
				}
				admitted.Add(1)
				// Counted after the take commits and uncounted before the
				// release: never more than the store holds.
				n := holding.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(time.Millisecond)
				holding.Add(-1)
				if err := r.ReleaseFirmwareSlot(ctx, d); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if m := most.Load(); m > limit {
		t.Fatalf("%d devices held a slot at once, limit %d", m, limit)
	}
	if admitted.Load() == 0 {
		t.Fatal("no slot was ever taken")
	}
	if h := slotHolders(t, s, "u:job"); len(h) != 0 {
		t.Fatalf("slots left after every release: %v", h)
	}
	// All at once, nothing released, each device a job of one batch task:
	// exactly the limit is admitted.
	var got atomic.Int32
	for w := range workers {
		r := a
		if w%2 == 1 {
			r = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, err := r.AcquireFirmwareSlot(ctx, FirmwareDelivery{UpgradeID: fmt.Sprintf("job%d", w), TaskID: "task", DeviceID: fmt.Sprintf("dev%d", w)}, limit, time.Hour)
			if err != nil {
				t.Error(err)
			}
			if ok {
				got.Add(1)
			}
		}()
	}
	wg.Wait()
	if n := got.Load(); n != limit {
		t.Fatalf("%d of %d devices admitted at once, want the limit %d", n, workers, limit)
	}
	if h := slotHolders(t, s, "t:task"); len(h) != limit {
		t.Fatalf("the task's holders %v, want %d", h, limit)
	}
}
