package mqtt

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMQTTPerConnectionBuffers: mochi gets the small per-connection read
// buffer and write queue (what an idle connection costs), and what they
// must still carry does get through: packets larger than the read
// buffer, and bursts of downlinks well beyond the queue's capacity
// (downlinks are written directly, never through the queue).
func TestMQTTPerConnectionBuffers(t *testing.T) {
	e := newEnv(t)
	opts := e.srv.broker.Options
	if got := opts.ClientNetReadBufferSize; got != ClientReadBufferSize || got >= 2048 {
		t.Errorf("read buffer %d bytes, want %d (below mochi's 2 KiB)", got, ClientReadBufferSize)
	}
	if got := opts.Capabilities.MaximumClientWritesPending; got != ClientWritesPending || got >= 128 {
		t.Errorf("write queue %d slots, want %d", got, ClientWritesPending)
	}

	e.secretDevice("dev_b", "secret-buffers", "", false)
	c := e.mustConnect(dial{id: "dev_b", secret: "secret-buffers"})
	e.ready("dev_b")

	// Uplinks spanning several read-buffer fills, back to back.
	events := "$oc/devices/dev_b/sys/events/up"
	for _, n := range []int{ClientReadBufferSize - 1, ClientReadBufferSize + 1, 5*ClientReadBufferSize + 3} {
		c.pub(t, events, 1, strings.Repeat("u", n))
	}

	// A burst of downlinks, all at once, four times the queue.
	const burst = 4 * ClientWritesPending
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errs := make(chan error, burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topic := fmt.Sprintf("$oc/devices/dev_b/sys/messages/down/%d", i)
			if err := e.srv.deliver(ctx, "dev_b", topic, []byte(strings.Repeat("d", ClientReadBufferSize))); err != nil {
				errs <- fmt.Errorf("downlink %d: %w", i, err)
			}
		}()
	}
	seen := make(map[string]bool)
	for len(seen) < burst {
		seen[c.next(t, 5*time.Second).Topic()] = true
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.pub(t, events, 1, "still connected")
}
