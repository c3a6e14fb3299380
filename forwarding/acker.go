package forwarding

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// ackerMaxPages bounds the pages a worker delivers past the cursor being
// written: when acknowledgements fall that far behind (a slow store) the
// worker waits for them, so a kill -9 redelivers a bounded span.
const ackerMaxPages = 8

// ackerFlushTimeout bounds the last acknowledgement a stopping worker
// writes, so that its successor (this node's after a change, or another
// node's) starts from what it delivered.
const ackerFlushTimeout = 2 * time.Second

// acker writes a worker's acknowledgements off the worker's loop: the
// worker hands over the cursor up to which everything was delivered and
// reads the next page while the write commits. Cursors handed over
// meanwhile are coalesced into the next write (the latest cursor, the
// drops summed). A cursor is handed over only once all before it were
// delivered, so nothing undelivered is acknowledged; a crash loses at
// most the writes not done, whose events are delivered again.
type acker struct {
	w  *worker
	mu sync.Mutex
	// The acknowledgement waiting to be written: cursor, the drops to
	// count with it, and how many pages it covers (0: none waiting).
	cursor uint64
	drops  registry.EventDrops
	pages  int

	kick chan struct{} // capacity 1: something waits to be written
	room chan struct{} // capacity 1: the writer took what was waiting
	gone chan struct{} // closed when the action's consumer is gone
	done chan struct{} // closed when the writer has returned
}

// startAcker starts w's acknowledgement writer; it writes until ctx ends,
// then writes what is left and returns.
func startAcker(ctx context.Context, w *worker) *acker {
	a := &acker{w: w, kick: make(chan struct{}, 1), room: make(chan struct{}, 1),
		gone: make(chan struct{}), done: make(chan struct{})}
	go a.run(ctx)
	return a
}

// hand has cursor, up to which every event was delivered or dropped
// (counted in drops), acknowledged. It waits only while ackerMaxPages
// pages wait to be written; false when ctx ended or the action is gone.
func (a *acker) hand(ctx context.Context, cursor uint64, drops registry.EventDrops) bool {
	for {
		a.mu.Lock()
		if a.pages < ackerMaxPages {
			a.cursor = max(a.cursor, cursor)
			a.drops.Count += drops.Count
			if drops.Reason != "" {
				a.drops.Reason = drops.Reason
			}
			a.pages++
			a.mu.Unlock()
			select {
			case a.kick <- struct{}{}:
			default:
			}
			return true
		}
		a.mu.Unlock()
		select {
		case <-a.room:
		case <-a.gone:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// take returns what waits to be written; ok is false when nothing does.
func (a *acker) take() (cursor uint64, drops registry.EventDrops, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.pages == 0 {
		return 0, registry.EventDrops{}, false
	}
	cursor, drops = a.cursor, a.drops
	a.drops, a.pages = registry.EventDrops{}, 0
	select {
	case a.room <- struct{}{}:
	default:
	}
	return cursor, drops, true
}

func (a *acker) run(ctx context.Context) {
	defer close(a.done)
	for {
		select {
		case <-a.kick:
		case <-ctx.Done():
			a.flush(ctx, 0, registry.EventDrops{})
			return
		}
		for {
			cursor, drops, ok := a.take()
			if !ok {
				break
			}
			if err := a.w.ack(ctx, cursor, drops); err != nil {
				if errors.Is(err, registry.ErrNotFound) {
					close(a.gone)
					return
				}
				// ctx ended during the write: it is written again, with
				// whatever was handed over since.
				a.flush(ctx, cursor, drops)
				return
			}
		}
	}
}

// flush writes, once ctx has ended, the acknowledgement cursor and drops
// (0: none) merged with what waits, within ackerFlushTimeout. Writing a
// cursor again is harmless: one not past the stored cursor changes
// nothing, its drops included.
func (a *acker) flush(ctx context.Context, cursor uint64, drops registry.EventDrops) {
	if c, d, ok := a.take(); ok {
		cursor = max(cursor, c)
		drops.Count += d.Count
		if d.Reason != "" {
			drops.Reason = d.Reason
		}
	}
	if cursor == 0 {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ackerFlushTimeout)
	defer cancel()
	if err := a.w.ack(fctx, cursor, drops); err != nil && !errors.Is(err, registry.ErrNotFound) {
		a.w.log.Warn("forwarding: last acknowledgement not written; its events will be delivered again",
			"cursor", cursor, "err", err)
	}
}

// wait returns once the writer has returned: after ctx ended, once what
// was handed over is written or ackerFlushTimeout has passed.
func (a *acker) wait() { <-a.done }
