package natsbus

import (
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// eventHints is the Bus's registry.EventHinter half: which projects'
// events a node's writes committed, so that the other nodes' stream
// readers read them at once. Hints are coalesced: commits mark their
// projects, and one sender goroutine publishes what is marked, each
// project once, whenever it is free again; a burst of commits costs a
// message per round of the sender, not one per commit. A hint lost (NATS
// down, its buffer full) costs the readers a poll interval, so hints are
// never retried and carry no sequence numbers.
type eventHints struct {
	b     *Bus
	mu    sync.Mutex
	dirty map[string]struct{} // projects marked since the sender's last round
	kick  chan struct{}       // capacity 1: the sender has something to send
	quit  chan struct{}
	done  chan struct{}
	buf   []string

	subsMu sync.Mutex
	subs   []func(projects []string)
	sub    *nats.Subscription

	sent, lost, received atomic.Uint64
}

// hintMsg is a hint on the wire.
type hintMsg struct {
	Origin   string   `json:"o"`
	Projects []string `json:"p"`
}

func (h *eventHints) init(b *Bus) {
	h.b = b
	h.dirty = map[string]struct{}{}
	h.kick = make(chan struct{}, 1)
	h.quit = make(chan struct{})
	h.done = make(chan struct{})
}

func (h *eventHints) start() error {
	sub, err := h.b.nc.Subscribe(h.b.hints, h.receive)
	if err != nil {
		return fmt.Errorf("natsbus: subscribe %s: %w", h.b.hints, err)
	}
	h.sub = sub
	if h.b.nc.IsConnected() {
		// Subscribed on the server when Open returns (best effort, as the
		// invalidations').
		_ = h.b.nc.FlushTimeout(h.b.o.ConnectTimeout)
	}
	go h.run()
	return nil
}

// HintEvents marks projects as having new events, for the other nodes.
// It never blocks.
func (b *Bus) HintEvents(projects []string) {
	h := &b.eventHints
	if len(projects) == 0 || b.closed.Load() {
		return
	}
	h.mu.Lock()
	for _, p := range projects {
		h.dirty[p] = struct{}{}
	}
	h.mu.Unlock()
	select {
	case h.kick <- struct{}{}:
	default: // the sender will see the marks in its next round
	}
}

// SubscribeEventHints has fn called with the projects other nodes'
// hints name, and with nil when hints may have been lost (after a
// reconnection, or when this node could not keep up with them).
func (b *Bus) SubscribeEventHints(fn func(projects []string)) {
	h := &b.eventHints
	h.subsMu.Lock()
	h.subs = append(h.subs, fn)
	h.subsMu.Unlock()
}

// HintStats counts the event hints since Open: messages sent, lost
// (NATS refused them) and received from other nodes.
type HintStats struct{ Sent, Lost, Received uint64 }

// HintStats returns the event hints' counters.
func (b *Bus) HintStats() HintStats {
	h := &b.eventHints
	return HintStats{Sent: h.sent.Load(), Lost: h.lost.Load(), Received: h.received.Load()}
}

func (h *eventHints) receive(m *nats.Msg) {
	if h.b.closed.Load() {
		return
	}
	var msg hintMsg
	if err := json.Unmarshal(m.Data, &msg); err != nil {
		h.b.log.Warn("natsbus: malformed event hint; waking every reader", "err", err)
		h.deliver(nil)
		return
	}
	if msg.Origin == h.b.o.Node || len(msg.Projects) == 0 {
		return
	}
	h.received.Add(1)
	h.deliver(msg.Projects)
}

// missed wakes every reader: hints to this node may have been lost.
func (h *eventHints) missed() { go h.deliver(nil) }

func (h *eventHints) deliver(projects []string) {
	h.subsMu.Lock()
	subs := h.subs
	h.subsMu.Unlock()
	for _, fn := range subs {
		fn(projects)
	}
}

// run is the sender: each round publishes what was marked meanwhile.
func (h *eventHints) run() {
	defer close(h.done)
	for {
		select {
		case <-h.kick:
			h.send()
		case <-h.quit:
			h.send()
			return
		}
	}
}

func (h *eventHints) send() {
	h.mu.Lock()
	h.buf = h.buf[:0]
	for p := range h.dirty {
		h.buf = append(h.buf, p)
	}
	clear(h.dirty)
	h.mu.Unlock()
	if len(h.buf) == 0 {
		return
	}
	b, err := json.Marshal(hintMsg{Origin: h.b.o.Node, Projects: h.buf})
	if err == nil {
		err = h.b.nc.Publish(h.b.hints, b)
	}
	if err != nil {
		h.lost.Add(1) // the other nodes' readers find the events at their poll
		return
	}
	h.sent.Add(1)
}

func (h *eventHints) stop(deadline time.Time) {
	close(h.quit)
	select {
	case <-h.done:
	case <-time.After(time.Until(deadline)):
	}
}
