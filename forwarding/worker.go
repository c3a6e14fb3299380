package forwarding

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/routing"
	"golang.org/x/time/rate"
)

// worker delivers one action's events. It reads a page of the project's
// events after its acknowledged cursor, delivers the selected ones, each
// device's in order on one of its lanes, and acknowledges the page when
// every lane is done; a failed delivery is retried (with backoff) until it
// succeeds, so nothing after it is acknowledged before it. The
// acknowledgement is written by its acker while the worker reads and
// delivers the next page.
type worker struct {
	o        Options
	a        *registry.RuleAction
	consumer string
	log      *slog.Logger
	stats    *Stats
	seed     maphash.Seed
	acks     *acker // set by run

	// failures counts failed deliveries in a row (any lane); draining is
	// set by a failure and cleared when a read reaches the stream's end (the
	// backlog is drained): while set, deliveries wait for the drain
	// limiter.
	failures atomic.Uint64
	draining atomic.Bool
	drain    *rate.Limiter

	// Backlog bounds: messages at positions up to sizeCut are past
	// MaxSize (measured at most every BacklogCheck, at sizeChecked);
	// dropAge and dropSize count the messages dropped since the last
	// acknowledgement.
	bounds            BacklogBounds
	sizeCut           atomic.Uint64
	sizeChecked       atomic.Int64
	dropAge, dropSize atomic.Uint64

	// The rule's compiled condition and projection, recompiled when its
	// where or select changes.
	where, sel string
	cond       routing.Condition
	proj       routing.Projection
}

func newWorker(o Options, a *registry.RuleAction, st *Stats) *worker {
	burst := max(1, int(o.DrainRate/10))
	return &worker{o: o, a: a, consumer: registry.ActionConsumer(a.ID), stats: st, seed: maphash.MakeSeed(),
		log:   o.Logger.With("action", a.ID, "project", a.ProjectID, "channel", a.Channel),
		drain: rate.NewLimiter(rate.Limit(o.DrainRate), burst), bounds: o.backlog(a.Channel)}
}

func (w *worker) run(ctx context.Context) {
	var ch Channel
	for attempt := uint(0); ctx.Err() == nil && ch == nil; attempt++ {
		open := w.o.Openers[w.a.Channel]
		if open == nil {
			w.log.Error("forwarding: no such channel on this node; the action's events are kept until the backlog bounds trim them")
			<-ctx.Done()
			return
		}
		var err error
		if ch, err = open(ctx, w.a); err != nil {
			w.log.Error("forwarding: open channel", "err", err)
			w.sleep(ctx, w.backoff(attempt))
		}
	}
	if ch == nil {
		return
	}
	defer func() {
		if err := ch.Close(); err != nil {
			w.log.Warn("forwarding: close channel", "err", err)
		}
	}()
	cursor, ok := w.cursor(ctx)
	w.stats.cursor.Store(int64(cursor))
	actx, stopAcks := context.WithCancel(ctx)
	w.acks = startAcker(actx, w)
	defer func() {
		stopAcks()
		w.acks.wait() // what was delivered is acknowledged before a successor starts
	}()
	for ok && ctx.Err() == nil {
		cursor, ok = w.step(ctx, ch, cursor)
	}
}

// cursor reads the action's acknowledged cursor; ok is false when ctx
// ended or the action is gone.
func (w *worker) cursor(ctx context.Context) (uint64, bool) {
	for attempt := uint(0); ctx.Err() == nil; attempt++ {
		c, err := w.o.Registry.EventConsumer(ctx, w.a.ProjectID, w.consumer)
		if err == nil {
			return c.Cursor, true
		}
		if errors.Is(err, registry.ErrNotFound) {
			// Deleted with its action (the engine stops us), or lost: the
			// engine tries again at its next reload.
			w.log.Warn("forwarding: the action's event consumer does not exist", "consumer", w.consumer)
			return 0, false
		}
		w.log.Error("forwarding: read cursor", "err", err)
		w.sleep(ctx, w.backoff(attempt))
	}
	return 0, false
}

// step reads, delivers and acknowledges one page; it returns the cursor
// to go on from, and false to stop.
func (w *worker) step(ctx context.Context, ch Channel, cursor uint64) (uint64, bool) {
	var wake <-chan struct{} // nil (never ready) without a Waker
	if w.o.Wake != nil {
		wake = w.o.Wake.EventsCommitted(w.a.ProjectID) // before the read: no commit after it is missed
	}
	page, err := w.o.Registry.Events(ctx, w.a.ProjectID, cursor, w.o.PageSize)
	if errors.Is(err, registry.ErrEventsTrimmed) {
		return w.skipTrimmed(ctx, cursor)
	}
	if err != nil {
		if ctx.Err() == nil {
			w.log.Error("forwarding: read events", "err", err)
			w.sleep(ctx, w.o.RetryBase)
		}
		return cursor, true
	}
	if len(page.Events) == 0 {
		w.stats.oldest.Store(0)
		w.draining.Store(false)
		w.await(ctx, wake)
		return cursor, true
	}
	w.stats.oldest.Store(page.Events[0].Time.UnixNano())
	w.applyFlowControl(ctx)
	w.applyBacklogPolicies(ctx)
	if len(page.Events) == w.o.PageSize || w.draining.Load() {
		w.checkSize(ctx, cursor) // behind the stream: a backlog builds up
	}
	msgs, err := w.selectEvents(ctx, page.Events)
	if err != nil {
		if errors.Is(err, registry.ErrNotFound) {
			return cursor, false // the rule was deleted, with this action
		}
		if ctx.Err() == nil {
			w.log.Error("forwarding: select events", "err", err)
			w.sleep(ctx, w.o.RetryBase)
		}
		return cursor, true
	}
	failuresBefore := w.stats.Failures.Load()
	if !w.deliver(ctx, ch, msgs) {
		return cursor, false
	}
	if !w.acks.hand(ctx, page.Next, w.drops()) {
		return cursor, false
	}
	w.stats.oldest.Store(0)
	if len(page.Events) < w.o.PageSize && w.stats.Failures.Load() == failuresBefore {
		// The read reached the stream's end and the page went out at the
		// first try, so no backlog built up behind it: what comes next is
		// not held to the drain rate.
		w.draining.Store(false)
	}
	return page.Next, true
}

// applyFlowControl sets the drain rate from the project's flow-control
// policies: the lowest limit applying to the action, else DrainRate.
func (w *worker) applyFlowControl(ctx context.Context) {
	ps, err := w.o.Registry.FlowControlPolicies(ctx, w.a.ProjectID)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("forwarding: read flow-control policies; keeping the current drain rate", "err", err)
		}
		return
	}
	limit := w.o.DrainRate
	if l := registry.FlowLimit(ps, w.a); l > 0 {
		limit = float64(l)
	}
	if rate.Limit(limit) != w.drain.Limit() {
		w.drain.SetLimit(rate.Limit(limit))
		w.drain.SetBurst(max(1, int(limit/10)))
	}
}

// skipTrimmed moves past events the backlog bounds trimmed before they
// were delivered: they are lost, and counted and logged as such.
func (w *worker) skipTrimmed(ctx context.Context, cursor uint64) (uint64, bool) {
	h, err := w.o.Registry.EventHorizon(ctx, w.a.ProjectID)
	if err != nil || h <= cursor {
		if ctx.Err() == nil {
			w.log.Error("forwarding: read event horizon", "err", err)
			w.sleep(ctx, w.o.RetryBase)
		}
		return cursor, true
	}
	w.stats.Dropped.Add(h - cursor)
	w.log.Error("forwarding: events were trimmed by the event backlog bounds before delivery; they are lost",
		"from_cursor", cursor, "to_cursor", h, "positions", h-cursor)
	if !w.acks.hand(ctx, h, registry.EventDrops{Count: h - cursor, Reason: DropTrimmed}) {
		return cursor, false
	}
	return h, true
}

// selectEvents keeps the events the action's rule selects, as messages.
// An inactive rule selects nothing: what happens while it is inactive is
// not forwarded, as IoTDA's.
func (w *worker) selectEvents(ctx context.Context, evs []registry.Event) ([]*Message, error) {
	rule, err := w.o.Registry.RoutingRule(ctx, w.a.ProjectID, w.a.RuleID)
	if err != nil {
		return nil, err
	}
	if !rule.Active {
		return nil, nil
	}
	if rule.Where != w.where {
		c, err := rule.Condition()
		if err != nil {
			return nil, fmt.Errorf("rule %s: stored where does not compile: %w", rule.ID, err)
		}
		w.where, w.cond = rule.Where, c
	}
	if rule.Select != w.sel {
		p, err := rule.Projection()
		if err != nil {
			return nil, fmt.Errorf("rule %s: stored select does not compile: %w", rule.ID, err)
		}
		w.sel, w.proj = rule.Select, p
	}
	var out []*Message
	for i := range evs {
		ev := &evs[i]
		if !rule.Matches(ev) {
			continue
		}
		b, err := encodeEnvelope(ev)
		if err != nil {
			return nil, err
		}
		if !w.cond.Match(b) {
			continue
		}
		if !w.proj.All() {
			b = w.proj.Apply(make([]byte, 0, len(b)), b)
		}
		out = append(out, &Message{RequestID: ev.ID, ProjectID: ev.ProjectID, DeviceID: ev.Header.DeviceID,
			Seq: ev.Seq, Payload: b, pos: ev.Position, at: ev.Time.UnixNano()})
	}
	return out, nil
}

// deliver sends msgs, each device's in order on one lane, the lanes
// concurrently; it returns when all are delivered (true) or ctx ended.
func (w *worker) deliver(ctx context.Context, ch Channel, msgs []*Message) bool {
	if len(msgs) == 0 {
		return true
	}
	lanes := make([][]*Message, w.o.Lanes)
	for _, m := range msgs {
		i := maphash.String(w.seed, m.DeviceID) % uint64(len(lanes))
		lanes[i] = append(lanes[i], m)
	}
	var wg sync.WaitGroup
	for _, lane := range lanes {
		if len(lane) == 0 {
			continue
		}
		wg.Go(func() {
			if bc, ok := ch.(BatchChannel); ok {
				w.sendBatches(ctx, bc, lane)
				return
			}
			for _, m := range lane {
				if !w.send(ctx, ch, m) {
					return
				}
			}
		})
	}
	wg.Wait()
	return ctx.Err() == nil
}

// send delivers m, retrying until the destination acknowledges it or ctx
// ends.
func (w *worker) send(ctx context.Context, ch Channel, m *Message) bool {
	for ctx.Err() == nil {
		if w.passOver(m) {
			return true
		}
		if w.draining.Load() {
			if err := w.drain.Wait(ctx); err != nil {
				return false
			}
		}
		err := ch.Deliver(ctx, m)
		if err == nil {
			w.failures.Store(0)
			w.stats.Delivered.Add(1)
			w.observe(m)
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		n := w.failures.Add(1)
		w.stats.Failures.Add(1)
		w.draining.Store(true)
		delay := w.backoff(uint(n - 1))
		if n == 1 || n%10 == 0 {
			w.log.Warn("forwarding: delivery failed; retrying", "failures_in_a_row", n, "retry_in", delay,
				"device_id", m.DeviceID, "request_id", m.RequestID, "err", err)
		}
		w.checkSize(ctx, uint64(w.stats.cursor.Load()))
		w.sleep(ctx, delay)
	}
	return false
}

// observe reports a delivered message's delay, from its event's time.
func (w *worker) observe(m *Message) {
	if w.o.Delivered != nil {
		w.o.Delivered(w.a.ID, time.Since(time.Unix(0, m.at)))
	}
}

// sendBatches delivers a lane's messages in batches: the whole lane at
// once, or, while draining, as many as the drain limiter allows at a time.
// A failed batch is delivered again from its start after the backoff
// (see BatchChannel); false when ctx ended first.
func (w *worker) sendBatches(ctx context.Context, ch BatchChannel, lane []*Message) bool {
	for len(lane) > 0 {
		for len(lane) > 0 && w.passOver(lane[0]) {
			lane = lane[1:]
		}
		if len(lane) == 0 {
			break
		}
		n := len(lane)
		if w.draining.Load() {
			n = min(n, w.drain.Burst())
			if err := w.drain.WaitN(ctx, n); err != nil {
				return false
			}
		}
		err := ch.DeliverBatch(ctx, lane[:n])
		if err == nil {
			w.failures.Store(0)
			w.stats.Delivered.Add(uint64(n))
			for _, m := range lane[:n] {
				w.observe(m)
			}
			lane = lane[n:]
			continue
		}
		if ctx.Err() != nil {
			return false
		}
		f := w.failures.Add(1)
		w.stats.Failures.Add(1)
		w.draining.Store(true)
		delay := w.backoff(uint(f - 1))
		if f == 1 || f%10 == 0 {
			w.log.Warn("forwarding: batch delivery failed; retrying", "failures_in_a_row", f, "retry_in", delay,
				"messages", n, "err", err)
		}
		w.checkSize(ctx, uint64(w.stats.cursor.Load()))
		w.sleep(ctx, delay)
	}
	return true
}

// ack records the cursor, with the drops since the last, retrying until
// the store takes it or ctx ends; the error is registry.ErrNotFound when
// the action was deleted, else ctx's.
func (w *worker) ack(ctx context.Context, cursor uint64, drops registry.EventDrops) error {
	for attempt := uint(0); ctx.Err() == nil; attempt++ {
		err := w.o.Registry.AckEventsDropping(ctx, w.a.ProjectID, w.consumer, cursor, drops)
		if err == nil {
			w.stats.cursor.Store(int64(cursor))
			return nil
		}
		if errors.Is(err, registry.ErrNotFound) {
			return err
		}
		if ctx.Err() == nil {
			w.log.Error("forwarding: acknowledge events", "cursor", cursor, "err", err)
			w.sleep(ctx, w.backoff(attempt))
		}
	}
	return ctx.Err()
}

// backoff is RetryBase doubled n times, at most RetryMax.
func (w *worker) backoff(n uint) time.Duration {
	if n > 30 {
		return w.o.RetryMax
	}
	return min(w.o.RetryBase<<n, w.o.RetryMax)
}

// await waits, once caught up, for a commit (wake) or the poll.
func (w *worker) await(ctx context.Context, wake <-chan struct{}) {
	t := time.NewTimer(w.o.Poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-wake:
	case <-t.C:
	}
}

func (w *worker) sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
