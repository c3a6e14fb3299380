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
