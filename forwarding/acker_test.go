package forwarding

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// slowAcks is the registry with acknowledgements held until released,
// each checked against what was delivered when it is written.
type slowAcks struct {
	*registry.Registry
	t       *testing.T
	release chan struct{}

	mu        sync.Mutex
	delivered map[uint64]bool // positions the channel took
	acks      []uint64        // cursors written, in order
}

func (s *slowAcks) AckEventsDropping(ctx context.Context, project, name string, cursor uint64, drops registry.EventDrops) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	// Every uplink up to cursor was delivered.
	page, err := s.Registry.Events(ctx, project, 0, registry.MaxEventsPage)
	if err != nil {
		return err
	}
	s.mu.Lock()
	for _, ev := range page.Events {
		if ev.Position <= cursor && ev.Resource == registry.ResourceDeviceMessage && !s.delivered[ev.Position] {
			s.t.Errorf("acknowledging %d, past undelivered position %d", cursor, ev.Position)
		}
	}
	s.acks = append(s.acks, cursor)
	s.mu.Unlock()
	return s.Registry.AckEventsDropping(ctx, project, name, cursor, drops)
}

// The worker reads and delivers the next page while the previous page's
// acknowledgement is being written, never acknowledges past what was
// delivered, and keeps each device's order.
func TestAckIsPipelined(t *testing.T) {
	reg := testRegistry(t)
	devs := fixture(t, reg, "p", 3)
	action := addAction(t, reg, "p", addRule(t, reg, "p", registry.RoutingRule{
		Subject: registry.RuleSubject{Resource: registry.ResourceDeviceMessage, Event: registry.EventReport}}))
	s := &slowAcks{Registry: reg, t: t, release: make(chan struct{}), delivered: map[uint64]bool{}}
	f := newFake(func(m *Message) error {
		s.mu.Lock()
		s.delivered[m.pos] = true
		s.mu.Unlock()
		return nil
	})
	runEngine(t, s, map[string]*fakeChannel{action: f}, Options{Lanes: 2, PageSize: 3})
	// 3 pages of 3, then one more uplink each: all delivered while the
	// first acknowledgement is held.
	uplinks(t, reg, devs, 3)
	waitFor(t, "9 deliveries", 5*time.Second, func() bool { return f.count() == 9 })
	uplinks(t, reg, devs, 1)
	waitFor(t, "12 deliveries with the acknowledgement held", 5*time.Second, func() bool { return f.count() == 12 })
	for _, d := range devs {
		wantInOrder(t, d, f.seqs(d), 2, 4)
	}
	ctx := context.Background()
	c, err := reg.EventConsumer(ctx, "p", registry.ActionConsumer(action))
	if err != nil {
		t.Fatal(err)
	}
	start := c.Cursor
	close(s.release)
	waitFor(t, "the cursor at the stream's end", 5*time.Second, func() bool {
		c, err := reg.EventConsumer(ctx, "p", registry.ActionConsumer(action))
		page, _ := reg.Events(ctx, "p", c.Cursor, 10)
		return err == nil && len(page.Events) == 0
	})
	s.mu.Lock()
	defer s.mu.Unlock()
	// The pages handed over while the first write was held went out in
	// fewer writes than pages, each further than the last.
	if len(s.acks) == 0 || len(s.acks) >= 5 {
		t.Errorf("cursors written %v from %d: want the held pages coalesced", s.acks, start)
	}
	for i := 1; i < len(s.acks); i++ {
		if s.acks[i] <= s.acks[i-1] {
			t.Errorf("cursors written out of order: %v", s.acks)
		}
	}
}
