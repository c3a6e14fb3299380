package registry

import (
	"context"
	"testing"
	"time"
)

func TestEventsCommittedWakesReaders(t *testing.T) {
	r := newEventRegistry(t, memStore(t), &fakeClock{t: time.Now()}, EventOptions{})
	ctx := context.Background()
	mustProduct(t, r, "proj", "m", "MQTT")
	d, err := r.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	closed := func(ch <-chan struct{}) bool {
		select {
		case <-ch:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	}
	// A write that records no event wakes nobody; one of another
	// project's events wakes only its readers.
	woken := r.EventsCommitted("proj")
	elsewhere := r.EventsCommitted("other")
	if _, err := r.AddEventConsumer(ctx, "proj", "c"); err != nil {
		t.Fatal(err)
	}
	if closed(woken) {
		t.Error("a write without events woke the stream's readers")
	}
	// One that does wakes every reader that took the channel before it.
	other := r.EventsCommitted("proj")
	if err := r.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if !closed(woken) || !closed(other) {
		t.Fatal("an uplink's commit did not wake the stream's readers")
	}
	if closed(elsewhere) {
		t.Error("an uplink's commit woke another project's readers")
	}
	// A reader that takes the channel after the commit waits for the next.
	next := r.EventsCommitted("proj")
	if closed(next) {
		t.Error("a commit before the wait woke it")
	}
	r.NotifyEvents("proj") // a cluster's bus, for another node's commit
	if !closed(next) {
		t.Error("NotifyEvents did not wake the reader")
	}
	r.NotifyEvents("")
	if !closed(elsewhere) {
		t.Error(`NotifyEvents("") did not wake every project's readers`)
	}
}

// On a cluster a reader on one node wakes for events another node's
// write committed (Options.EventHints), not at its next poll: through
// the relay, which the write wakes (directly, or by a hint when the
// relay runs on the other node) and whose commit wakes the readers; a
// node cut off the bus leaves its readers to their poll.
func TestEventsCommittedWakesOtherNodesReaders(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	startRelays(t, a, b)
	ctx := context.Background()
	mustProduct(t, a, "proj", "m", "MQTT")
	d, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"})
	if err != nil {
		t.Fatal(err)
	}
	waitOutboxEmpty(t, a) // the create's event is in the stream
	woken := a.EventsCommitted("proj")
	elsewhere := a.EventsCommitted("other")
	start := time.Now()
	if err := b.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woken:
		if waited := time.Since(start); waited > 50*time.Millisecond {
			t.Errorf("node-a's reader woke %v after node-b's write", waited)
		}
	case <-time.After(time.Second):
		t.Fatal("node-b's uplink did not wake node-a's reader")
	}
	select {
	case <-elsewhere:
		t.Error("node-b's uplink woke node-a's readers of another project")
	default:
	}
	// The writing node wakes its own readers without the bus.
	own := b.EventsCommitted("proj")
	if err := b.AddMessage(ctx, d.DeviceID, Message{Payload: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-own:
	case <-time.After(time.Second):
		t.Fatal("node-b's uplink did not wake node-b's reader")
	}
}

// Hints lost on the bus (nil) wake every project's readers.
func TestLostEventHintsWakeEveryReader(t *testing.T) {
	a, _, _ := twoNodes(t, nil)
	p, q := a.EventsCommitted("p"), a.EventsCommitted("q")
	a.eventsHinted(nil)
	for _, ch := range []<-chan struct{}{p, q} {
		select {
		case <-ch:
		case <-time.After(time.Second):
			t.Fatal("a lost hint did not wake a reader")
		}
	}
}

// relayCtx marks the context of the relay loops startRelays runs.
type relayCtx struct{}

// startRelays runs the event relay loops of a cluster's registries (what
// Run does) until the test ends.
func startRelays(t *testing.T, rs ...*Registry) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), relayCtx{}, true))
	done := make(chan struct{}, len(rs))
	for _, r := range rs {
		go func() { r.runRelay(ctx); done <- struct{}{} }()
	}
	t.Cleanup(func() {
		cancel()
		for range rs {
			<-done
		}
	})
}

// outboxLen counts the events waiting in the cluster's outbox.
func outboxLen(t *testing.T, r *Registry) int {
	t.Helper()
	n := 0
	if err := r.view(context.Background(), func(rd Reader) error {
		n = 0
		return rd.Scan(eventOutboxPrefix, nil, false, func(_, _ []byte) (bool, error) { n++; return true, nil })
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// waitOutboxEmpty waits until the relay has moved every outbox entry.
func waitOutboxEmpty(t *testing.T, r *Registry) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); outboxLen(t, r) > 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the relay left events in the outbox")
		}
	}
}
