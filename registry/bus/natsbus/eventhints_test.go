package natsbus_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/bus/natsbus"
	"github.com/iotgate/iotgate/registry/bus/natsbus/natstest"
)

// hintRecorder collects what a SubscribeEventHints fn is called with.
type hintRecorder struct {
	mu       sync.Mutex
	messages [][]string
	lost     int
}

func subscribeHints(b *natsbus.Bus) *hintRecorder {
	r := &hintRecorder{}
	b.SubscribeEventHints(func(projects []string) {
		r.mu.Lock()
		defer r.mu.Unlock()
		if projects == nil {
			r.lost++
			return
		}
		r.messages = append(r.messages, slices.Clone(projects))
	})
	return r
}

// seen is every project hinted so far, each once.
func (r *hintRecorder) seen() map[string]bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := map[string]bool{}
	for _, ps := range r.messages {
		for _, p := range ps {
			m[p] = true
		}
	}
	return m
}

// A node's event hints reach the other nodes, not itself; a burst of
// commits is coalesced into fewer messages than commits, each naming a
// project once.
func TestEventHintsReachOtherNodesCoalesced(t *testing.T) {
	srv := natstest.Start(t)
	a, b := open(t, srv.URL(), "node-a"), open(t, srv.URL(), "node-b")
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	ra, rb := subscribeHints(a), subscribeHints(b)

	const commits = 1000
	for i := range commits {
		a.HintEvents([]string{fmt.Sprint("p", i%3), "q"})
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rb.seen()) < 4 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := rb.seen(); len(got) != 4 || !got["p0"] || !got["p1"] || !got["p2"] || !got["q"] {
		t.Fatalf("node-b was hinted %v, want p0, p1, p2 and q", got)
	}
	rb.mu.Lock()
	for _, ps := range rb.messages {
		sorted := slices.Sorted(slices.Values(ps))
		if len(slices.Compact(sorted)) != len(ps) {
			t.Errorf("a hint names a project twice: %q", ps)
		}
	}
	rb.mu.Unlock()
	if s := a.HintStats(); s.Sent == 0 || s.Sent >= commits || s.Lost != 0 {
		t.Errorf("node-a's hint stats %+v: want between 1 and %d messages for %d commits", s, commits-1, commits)
	}
	// b's hint travels after a's through the server: once a has it, a has
	// seen (and ignored) its own.
	b.HintEvents([]string{"sentinel"})
	deadline = time.Now().Add(5 * time.Second)
	for !ra.seen()["sentinel"] && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := ra.seen(); len(got) != 1 || !got["sentinel"] {
		t.Fatalf("node-a was hinted %v, want only node-b's sentinel", got)
	}
}

// Hints sent while NATS was down are lost: a node back on NATS wakes
// every reader (a nil hint), and hints flow again.
func TestEventHintsAfterServerRestart(t *testing.T) {
	srv := natstest.Start(t)
	a, b := open(t, srv.URL(), "node-a"), open(t, srv.URL(), "node-b")
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	rb := subscribeHints(b)
	srv.Stop()
	waitHealthy(t, b, false, 5*time.Second)
	a.HintEvents([]string{"during"})
	srv.Restart()
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	lost := func() int { rb.mu.Lock(); defer rb.mu.Unlock(); return rb.lost }
	deadline := time.Now().Add(5 * time.Second)
	for lost() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if lost() == 0 {
		t.Fatal("node-b back on NATS did not wake every reader")
	}
	for !rb.seen()["after"] && time.Now().Before(deadline) {
		a.HintEvents([]string{"after"})
		time.Sleep(20 * time.Millisecond)
	}
	if !rb.seen()["after"] {
		t.Fatal("hints did not flow again after the restart")
	}
}
