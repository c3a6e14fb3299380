package natsbus_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/bus/natsbus"
	"github.com/iotgate/iotgate/registry/bus/natsbus/natstest"
)

// A notice published on one node reaches the other nodes' subscribers
// with its keys byte for byte, and not the publisher's own.
func TestPublishReachesOtherNodes(t *testing.T) {
	srv := natstest.Start(t)
	a, b := open(t, srv.URL(), "node-a"), open(t, srv.URL(), "node-b")
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	ra, rb := subscribe(a), subscribe(b)

	many := make([]string, 5000) // ~200 KiB: more than one message
	for i := range many {
		many[i] = fmt.Sprintf("d/%037d", i)
	}
	for i, tc := range []struct {
		name string
		keys []string
	}{
		{"one key", []string{"d/0123456789abcdef01234567"}},
		{"binary keys", []string{"\x00", "\xff", "k\x00\xff\x80tail", strings.Repeat("\xff", 300)}},
		{"empty key", []string{""}},
		{"many keys", many},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ra.reset()
			rb.reset()
			a.Publish(tc.keys)
			rb.await(t, 5*time.Second, "keys", func(keys []string, _ int) bool { return len(keys) >= len(tc.keys) })
			if got, drops := rb.snapshot(); !slices.Equal(got, tc.keys) || drops != 0 {
				t.Fatalf("b got %q (%d drop-alls), want %q", shorten(got), drops, shorten(tc.keys))
			}
			// b's answer travels after a's notice through the server, so
			// once a has it, a has seen (and must have ignored) its own.
			sentinel := fmt.Sprintf("sentinel-%d", i)
			b.Publish([]string{sentinel})
			ra.await(t, 5*time.Second, "sentinel", hasKey(sentinel))
			if got, drops := ra.snapshot(); !slices.Equal(got, []string{sentinel}) || drops != 0 {
				t.Fatalf("a got %q (%d drop-alls): its own notice came back", shorten(got), drops)
			}
		})
	}
	if s := a.Stats(); s.PublishedKeys != uint64(1+4+1+len(many)) || s.LostKeys != 0 {
		t.Fatalf("a's stats %+v", s)
	}
}

// Publish only queues: it returns at once however the network fares, and
// what does not fit is counted lost and made up for by a drop-all.
func TestPublishNeverBlocks(t *testing.T) {
	srv := natstest.Start(t)
	a := open(t, srv.URL(), "node-a", func(o *natsbus.Options) { o.PublishQueue = 4 })
	b := open(t, srv.URL(), "node-b")
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	rb := subscribe(b)
	srv.Kill()
	waitHealthy(t, a, false, 5*time.Second)

	key := strings.Repeat("k", 1000)
	start := time.Now()
	for range 20_000 { // 20 MB: beyond nats.go's 8 MB reconnect buffer too
		a.Publish([]string{key})
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("20,000 publishes during an outage took %v", d)
	}
	if s := a.Stats(); s.LostKeys == 0 {
		t.Fatalf("a 4-notice queue took 20,000 notices and lost none: %+v", s)
	}
	srv.Restart()
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	// b's own reconnection, or a's drop-all for the notices it lost
	// (TestReceiveDropsOnGaps tells them apart).
	rb.await(t, 5*time.Second, "drop-all", func(_ []string, drops int) bool { return drops >= 1 })
	publishUntil(t, a, rb, "after")
}

// NATS stopped and started again: nodes serve on, Publish does not
// block, Calls fail fast as unreachable; when it is back every node
// drops its cache (notices may have been lost), notices flow again, and
// Calls work.
func TestServerRestart(t *testing.T) {
	srv := natstest.Start(t)
	a, b := open(t, srv.URL(), "node-a"), open(t, srv.URL(), "node-b")
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	ra, rb := subscribe(a), subscribe(b)
	b.Serve(echo)

	srv.Stop()
	waitHealthy(t, a, false, 5*time.Second)
	waitHealthy(t, b, false, 5*time.Second)
	if err := a.Healthy(); !errors.Is(err, natsbus.ErrDisconnected) || !strings.Contains(err.Error(), "since") {
		t.Fatalf("Healthy during the outage: %v", err)
	}
	start := time.Now()
	for i := range 1000 {
		a.Publish([]string{fmt.Sprintf("during-%d", i)})
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("1000 publishes during the outage took %v", d)
	}
	callUnreachable(t, a, "node-b")
	if _, drops := ra.snapshot(); drops != 0 {
		t.Fatalf("a dropped its cache %d times before NATS came back", drops)
	}

	srv.Restart()
	waitHealthy(t, a, true, 5*time.Second)
	waitHealthy(t, b, true, 5*time.Second)
	for name, r := range map[string]*recorder{"a": ra, "b": rb} {
		r.await(t, 5*time.Second, name+"'s drop-all", func(_ []string, drops int) bool { return drops > 0 })
	}
	publishUntil(t, a, rb, "after-a")
	publishUntil(t, b, ra, "after-b")
	awaitCall(t, a, "node-b", 5*time.Second)
}

// A node opened while NATS is down starts at once, reports itself
// unhealthy, and joins when NATS comes: it drops its cache then (it ran
// without notices) and its notices flow.
func TestOpenWhileNATSDown(t *testing.T) {
	srv := natstest.Start(t)
	srv.Stop()
	start := time.Now()
	a := open(t, srv.URL(), "node-a")
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Open took %v with NATS down", d)
	}
	if err := a.Healthy(); !errors.Is(err, natsbus.ErrDisconnected) {
		t.Fatalf("Healthy with NATS down: %v", err)
	}
	if a.Server() != "" {
		t.Fatalf("connected to %q with NATS down", a.Server())
	}
	ra := subscribe(a)
	a.Serve(echo)
	callUnreachable(t, a, "node-a")

	srv.Restart()
	waitHealthy(t, a, true, 5*time.Second)
	if a.Server() != srv.URL() {
		t.Fatalf("connected to %q, want %q", a.Server(), srv.URL())
	}
	ra.await(t, 5*time.Second, "drop-all on the first connection", func(_ []string, drops int) bool { return drops > 0 })
	b := open(t, srv.URL(), "node-b")
	rb := subscribe(b)
	waitHealthy(t, b, true, 5*time.Second)
	a.Publish([]string{"hello"})
	rb.await(t, 5*time.Second, "a's notice", hasKey("hello"))
	awaitCall(t, b, "node-a", 5*time.Second)
	// b connected at once: it had nothing to make up for.
	if _, drops := rb.snapshot(); drops != 0 {
		t.Fatalf("b, connected at Open, dropped its cache %d times", drops)
	}
}

// Across a 3-server cluster: a notice published through server 1
// reaches a node on server 3; when server 1 stops, its nodes fail over
// to another server and carry on.
func TestCluster(t *testing.T) {
	srvs := natstest.StartCluster(t, 3)
	a := open(t, natstest.URLs(srvs[:2]), "node-a")
	waitHealthy(t, a, true, 5*time.Second)
	if a.Server() != srvs[0].URL() && a.Server() != srvs[1].URL() {
		t.Fatalf("a connected to %q", a.Server())
	}
	// One node on server 1 only: it fails over to servers it learnt of.
	c := open(t, srvs[0].URL(), "node-c")
	b := open(t, srvs[2].URL(), "node-b")
	for _, bus := range []*natsbus.Bus{a, b, c} {
		waitHealthy(t, bus, true, 5*time.Second)
	}
	ra, rb, rc := subscribe(a), subscribe(b), subscribe(c)
	b.Serve(echo)

	publishUntil(t, c, rb, "from-server-1")
	ra.await(t, 5*time.Second, "c's notice", hasKey("from-server-1"))
	awaitCall(t, c, "node-b", 5*time.Second)

	first := a.Server()
	stopped := srvs[0]
	if first == srvs[1].URL() {
		stopped = srvs[1]
	}
	stopped.Stop()
	if stopped != srvs[0] {
		srvs[0].Stop()
	}
	for name, bus := range map[string]*natsbus.Bus{"a": a, "c": c} {
		deadline := time.Now().Add(10 * time.Second)
		for bus.Server() == "" || bus.Server() == stopped.URL() || bus.Server() == srvs[0].URL() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not fail over: on %q, healthy: %v", name, bus.Server(), bus.Healthy())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	publishUntil(t, c, rb, "after-failover-c")
	publishUntil(t, a, rb, "after-failover-a")
	publishUntil(t, b, ra, "to-a")
	publishUntil(t, b, rc, "to-c")
	awaitCall(t, a, "node-b", 5*time.Second)
}
