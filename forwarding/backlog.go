package forwarding

import (
	"context"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// Reasons a message is dropped undelivered, as recorded on the action's
// event consumer (registry.EventConsumer.LastDropReason).
const (
	DropAge     = "backlog older than its age bound"
	DropSize    = "backlog larger than its size bound"
	DropTrimmed = "events trimmed by the event stream's bounds"
)

// applyBacklogPolicies sets the bounds from the channel's and the
// project's backlog policies: the lowest of each.
func (w *worker) applyBacklogPolicies(ctx context.Context) {
	ps, err := w.o.Registry.BacklogPolicies(ctx, w.a.ProjectID)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("forwarding: read backlog policies; keeping the current bounds", "err", err)
		}
		return
	}
	b := w.o.backlog(w.a.Channel)
	if size, age, ok := registry.BacklogBound(ps); ok {
		b.MaxSize, b.MaxAge = min(b.MaxSize, size), min(b.MaxAge, age)
	}
	w.bounds = b
}

// passOver reports whether m is past the action's backlog bounds, and if
// so counts it as dropped: it is then acknowledged undelivered with the
// rest of its page. A bound of 0 (no backlog) applies only once a
// delivery failed (draining): a healthy action delivers everything.
func (w *worker) passOver(m *Message) bool {
	switch {
	case m.pos != 0 && m.pos <= w.sizeCut.Load():
		w.dropSize.Add(1)
		w.stats.DroppedSize.Add(1)
	case (w.bounds.MaxAge > 0 || w.draining.Load()) && time.Since(time.Unix(0, m.at)) > w.bounds.MaxAge:
		w.dropAge.Add(1)
		w.stats.DroppedAge.Add(1)
	default:
		return false
	}
	return true
}

// checkSize measures the backlog after cursor against MaxSize, at most
// every BacklogCheck: what lies beyond the newest MaxSize bytes is then
// passed over.
func (w *worker) checkSize(ctx context.Context, cursor uint64) {
	if w.bounds.MaxSize == 0 && !w.draining.Load() {
		return // no backlog: only what could not be delivered is dropped
	}
	now := time.Now().UnixNano()
	last := w.sizeChecked.Load()
	if now-last < int64(w.o.BacklogCheck) || !w.sizeChecked.CompareAndSwap(last, now) {
		return
	}
	cut, err := w.o.Registry.EventBacklogCut(ctx, w.a.ProjectID, cursor, w.bounds.MaxSize)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("forwarding: measure backlog; its size bound waits for the next check", "err", err)
		}
		return
	}
	for {
		cur := w.sizeCut.Load()
		if cut <= cur || w.sizeCut.CompareAndSwap(cur, cut) {
			return
		}
	}
}

// drops takes the counts of messages dropped since the last
// acknowledgement, and logs them: a drop is never silent.
func (w *worker) drops() registry.EventDrops {
	age, size := w.dropAge.Swap(0), w.dropSize.Swap(0)
	if age+size == 0 {
		return registry.EventDrops{}
	}
	w.log.Error("forwarding: the action's backlog exceeded its bounds; the oldest undelivered messages were dropped",
		"dropped_for_age", age, "dropped_for_size", size, "max_age", w.bounds.MaxAge, "max_size_bytes", w.bounds.MaxSize)
	reason := DropAge
	if size > age {
		reason = DropSize
	}
	return registry.EventDrops{Count: age + size, Reason: reason}
}
