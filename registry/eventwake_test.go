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
// write committed (Options.EventHints), not at its next poll; a node cut
// off the bus leaves its readers to their poll.
func TestEventsCommittedWakesOtherNodesReaders(t *testing.T) {
	a, b, _ := twoNodes(t, nil)
	ctx := context.Background()
	mustProduct(t, a, "proj", "m", "MQTT")
	d, err := a.CreateDevice(ctx, NewDevice{ProjectID: "proj", NodeID: "n", ProductID: "m"})
	if err != nil {
		t.Fatal(err)
	}
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
