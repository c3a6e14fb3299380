package forwarding

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// downUntilUp is a fake destination that fails until up is called.
func downUntilUp() (f *fakeChannel, up func()) {
	down := true
	f = newFake(func(*Message) error {
		if down {
			return errors.New("down")
		}
		return nil
	})
	return f, func() { f.mu.Lock(); down = false; f.mu.Unlock() }
}

// runBacklogEngine runs an engine whose one action of p's uplinks goes to
// f, with the backlog bounds given.
func runBacklogEngine(t *testing.T, reg *registry.Registry, f *fakeChannel, bounds BacklogBounds) (action string, e *Engine) {
	t.Helper()
	action = addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	e, _ = runEngine(t, reg, map[string]*fakeChannel{action: f}, Options{RetryBase: time.Millisecond,
		RetryMax: 20 * time.Millisecond, Poll: 5 * time.Millisecond, Reload: 20 * time.Millisecond,
		ChannelBacklog: map[string]BacklogBounds{registry.ChannelHTTP: bounds}, BacklogCheck: 5 * time.Millisecond})
	// The action's statistics exist once its worker started (the
	// engine's first reconcile).
	waitFor(t, "the action's worker", 5*time.Second, func() bool { return e.Stats(action) != nil })
	return action, e
}

func TestBacklogAgeBound(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 2)
	f, up := downUntilUp()
	action, e := runBacklogEngine(t, reg, f, BacklogBounds{MaxAge: 300 * time.Millisecond})
	uplinks(t, reg, devs, 3) // dropped: older than 300 ms when the destination is back
	time.Sleep(500 * time.Millisecond)
	uplinks(t, reg, devs, 2)
	up()
	waitFor(t, "the fresh uplinks", 5*time.Second, func() bool { return f.count() == 4 })
	for _, d := range devs {
		wantInOrder(t, d, f.seqs(d), 5, 2) // seq 1 is the device's creation
	}
	if st := e.Stats(action); st.DroppedAge.Load() != 6 || st.DroppedSize.Load() != 0 {
		t.Errorf("dropped %d for age, %d for size; want 6 and 0", st.DroppedAge.Load(), st.DroppedSize.Load())
	}
	waitFor(t, "the drops recorded on the action", 5*time.Second, func() bool {
		c, err := reg.EventConsumer(context.Background(), "p", registry.ActionConsumer(action))
		return err == nil && c.Dropped == 6 && c.LastDropReason == DropAge && !c.LastDrop.IsZero()
	})
}

func TestBacklogSizeBound(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 1)
	f, up := downUntilUp()
	// About three stored uplinks (each well over 200 bytes, under 1000).
	action, e := runBacklogEngine(t, reg, f, BacklogBounds{MaxSize: 3 * 600})
	uplinks(t, reg, devs, 20)
	waitFor(t, "a size drop", 5*time.Second, func() bool { return e.Stats(action).DroppedSize.Load() > 0 })
	up()
	waitFor(t, "the rest delivered", 5*time.Second, func() bool {
		return uint64(f.count())+e.Stats(action).DroppedSize.Load() == 20
	})
	got := f.seqs(devs[0])
	if len(got) == 0 || len(got) > 10 || got[len(got)-1] != 21 {
		t.Fatalf("delivered seqs %v: want the newest few, up to seq 21", got)
	}
	// In order, each once. Not necessarily contiguous: a size check that
	// runs while the worker delivers the first of the backlog drops what
	// is still over the bound after them.
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("delivered seqs %v: not in order", got)
		}
	}
	waitFor(t, "the drops recorded on the action", 5*time.Second, func() bool {
		c, err := reg.EventConsumer(context.Background(), "p", registry.ActionConsumer(action))
		return err == nil && c.Dropped == e.Stats(action).DroppedSize.Load() && c.LastDropReason == DropSize
	})
}

// A caught-up action is woken by the commit of its project's events, not
// by its poll.
func TestWakeOnCommit(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 1)
	f := newFake(nil)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	startEngine(t, reg, map[string]*fakeChannel{action: f}, Options{Poll: time.Minute, Reload: 20 * time.Millisecond})
	time.Sleep(200 * time.Millisecond) // the worker has started and caught up
	for i := range 3 {
		start := time.Now()
		uplinks(t, reg, devs, 1)
		waitFor(t, "the push", 5*time.Second, func() bool { return f.count() == i+1 })
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("push %d took %v: the worker waited for its poll", i, d)
		}
	}
}

// A project's backlog policy of 0 s keeps no backlog: what cannot be
// delivered is dropped, while a healthy destination still gets it all.
func TestBacklogPolicyNoBacklog(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 1)
	zero := int64(0)
	if _, err := reg.AddBacklogPolicy(context.Background(), "p", registry.NewBacklogPolicy{Name: "none", Time: &zero}); err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	f := newFake(func(*Message) error {
		if down.Load() {
			return errors.New("down")
		}
		return nil
	})
	action, e := runBacklogEngine(t, reg, f, BacklogBounds{})
	uplinks(t, reg, devs, 2)
	waitFor(t, "the healthy pushes", 5*time.Second, func() bool { return f.count() == 2 })
	down.Store(true)
	uplinks(t, reg, devs, 3)
	waitFor(t, "the drops", 5*time.Second, func() bool { return e.Stats(action).DroppedAge.Load() == 3 })
	down.Store(false)
	uplinks(t, reg, devs, 2)
	waitFor(t, "the pushes after the outage", 5*time.Second, func() bool { return f.count() == 4 })
	if got := f.seqs(devs[0]); len(got) != 4 || got[2] != 7 || got[3] != 8 {
		t.Errorf("delivered seqs %v, want 2, 3, 7, 8", got)
	}
}
