package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The cluster's event outbox and its relay (see the comment at the top
// of eventstream.go for why).
//
// On a cluster a write that records an event does not take a stream
// position: it stores the event under its device's outbox key,
// eventOutboxKey(device, seq), with the per-device seq it takes as on one
// node (es/{device}, read and rewritten in its transaction). Writes of
// different devices then touch no common key, whichever node runs them.
//
// One relay per cluster, the holder of the relayLease, moves outbox
// entries into the project streams in batches: a snapshot reads up to
// relayBatch entries and the cluster's counter (eventPositionKey, which
// only relays write now); then one transaction, if the counter is still
// the same, takes the next positions, writes the entries under
// ep/{project}/{position}, deletes them from the outbox and stores the
// counter (relayBatch; why the entries are not read in the transaction
// itself: relayEvents). What makes that correct:
//
//   - Per-device order. A device's seq s+1 is taken by a write that read
//     the seq key s's write wrote (after the create, which writes none:
//     the device record it wrote), so it commits after it; a snapshot
//     that holds s+1 holds s. The outbox holds exactly a device's events
//     not yet relayed, and they are contiguous in seq order: a snapshot's
//     entries of one device are its next seqs, in key order. A batch cut
//     by relayBatch takes the first entries of its last device (its
//     lowest seqs) and leaves the rest for the next batch, which resumes
//     at the start of that device's entries (eventRelay.resume): no
//     device's entries are ever split between the two ends of one scan,
//     and a batch never
//     relays a seq before a lower one. So no entry is held back, and no
//     per-device state outside the store is needed: the outbox itself is
//     the relay's memory, and a relay that takes over from another one
//     starts from it.
//   - Positions increase in commit order. Every relay transaction reads
//     and rewrites the counter, so two relay transactions (two nodes that
//     both believe they hold the lease, a node whose lease expired while
//     it was paused) conflict and one runs again: batches commit one after
//     the other, each above the last. A reader never sees a position whose
//     predecessors are still to commit.
//   - Exactly once. An entry is deleted in the transaction that writes it
//     into the stream; two transactions that delete the same entry
//     conflict on the counter, and one whose snapshot is older than
//     another's commit finds the counter changed and reads again
//     (errRelayRaced). A relay killed mid-batch committed nothing;
//     the next holder of the lease relays the same entries. A dead node's
//     entries are the outbox's like any other.
//   - A device deleted and created again starts its seqs over at 1, whose
//     key sorts before its last incarnation's entries still waiting. The
//     create relays those leftovers itself, in its transaction
//     (relayLeftovers), so the outbox never holds two incarnations of one
//     device. That takes the counter, like a relay; it is rare (a create
//     within the relay's latency of a delete of the same id).
//
// Wake-ups: a commit that wrote outbox entries wakes this node's relay,
// and tells the other nodes through the event hints (relayHint) unless
// this node holds the lease; the relay's commit wakes the readers of the
// projects it wrote, here and (hints) on the other nodes. relayTick is a
// safety net for lost hints.
//
// A single node (Options.Node unset) has no outbox: its writes take
// positions on the committer, as before. One that opens a store with an
// outbox left by a cluster relays it once at start (drainOutbox).

const (
	// relayBatch bounds the outbox entries one relay transaction moves.
	relayBatch = 1000
	// relayLease names the relay's lease.
	relayLease = "events-relay"
	// relayHint is the event hint that tells the other nodes' relays that
	// the outbox has new entries. It cannot be a project id (ids are
	// [A-Za-z0-9_-]), so readers never take it for one.
	relayHint = "#outbox"
)

// eventRelay is a node's relay state.
type eventRelay struct {
	// mu makes this node's relay batches take turns (the relay loop, a
	// start-up drain, tests); the resume key is its.
	mu sync.Mutex
	// resume is where the next batch starts reading the outbox: the start
	// of the device whose entries the last batch was cut in, or after
	// the last device it relayed (nil: from the start). It only spreads
	// batches fairly over the devices; correctness does not depend on it.
	resume []byte
	// batch bounds the entries of one relay transaction (relayBatch;
	// tests make it small).
	batch int
	// afterRead, when set (tests), runs between a batch's snapshot and
	// its write: where another relay may commit.
	afterRead func()
	// wake has the relay loop run a batch now (capacity 1).
	wake chan struct{}
	// holding: this node held the relay's lease at its last renewal, so
	// its outbox commits need not be hinted to the other nodes.
	holding atomic.Bool
}

func newEventRelay() *eventRelay { return &eventRelay{batch: relayBatch, wake: make(chan struct{}, 1)} }

// poke wakes the relay loop; it never blocks.
func (e *eventRelay) poke() {
	select {
	case e.wake <- struct{}{}:
	default: // a wake-up is already pending
	}
}

// outboxCommitted is told that a committed write stored outbox entries.
func (r *Registry) outboxCommitted() {
	r.relay.poke()
	if r.hints != nil && !r.relay.holding.Load() {
		r.hints.HintEvents([]string{relayHint})
	}
}

// appendOutbox stores a numbered event record in the outbox (a cluster's
// write that records an event, see appendAfter).
func appendOutbox(w Writer, e encodedEvent, seq uint64) error {
	v := make([]byte, 0, len(e.project)+1+len(e.rec))
	v = append(v, e.project...)
	v = append(v, sep)
	v = append(v, e.rec...)
	binary.BigEndian.PutUint64(v[len(e.project)+1:], seq)
	return w.Set(eventOutboxKey(e.device, seq), v)
}

// outboxEntry is an outbox entry read by a relay.
type outboxEntry struct {
	key     []byte
	project string
	rec     []byte
}

func decodeOutboxEntry(k, v []byte) (outboxEntry, error) {
	i := bytes.IndexByte(v, sep)
	if i <= 0 || len(v)-i-1 < eventRecordHead {
		return outboxEntry{}, fmt.Errorf("event outbox entry %q: corrupt", k)
	}
	return outboxEntry{key: bytes.Clone(k), project: string(v[:i]), rec: bytes.Clone(v[i+1:])}, nil
}

// outboxDevicePrefix is the part of an outbox key before the seq:
// eventOutboxDevicePrefix of its device.
func outboxDevicePrefix(k []byte) []byte {
	if len(k) < len(eventOutboxPrefix)+1+8 {
		return k
	}
	return k[:len(k)-8]
}

// moveToStreams writes entries (in the order given) into their project
// streams at the next positions, deletes them from the outbox and stores
// the position counter, all in w's transaction. Every transaction that
// deletes outbox entries does it here, so it rewrites the counter.
func (r *Registry) moveToStreams(w Writer, entries []outboxEntry) error {
	if len(entries) == 0 {
		return nil
	}
	first, err := r.events.takePositions(w, uint64(len(entries)))
	if err != nil {
		return err
	}
	for i, e := range entries {
		if err := w.Set(eventKey(e.project, first+uint64(i)), e.rec); err != nil {
			return err
		}
		if err := w.Delete(e.key); err != nil {
			return err
		}
	}
	return nil
}

// errRelayRaced: another relay transaction committed between a batch's
// snapshot and its write; the batch is read again.
var errRelayRaced = errors.New("another relay committed since the batch was read")

// relayEvents moves one batch of outbox entries into the streams and
// reports how many it moved and whether more may be waiting.
//
// The batch is read in a snapshot (a View), with the position counter;
// the write then reads the counter alone, and goes on only if it is
// unchanged. Every transaction that deletes outbox entries (a relay's,
// a create's relayLeftovers) rewrites the counter, so an unchanged
// counter means every entry the snapshot read is still in the outbox, and
// two relays that read the same counter conflict on it. That keeps the
// write's reads to one key: on PostgreSQL, whose SERIALIZABLE
// transactions track what each one read, a relay that had read the
// outbox in its transaction would conflict with the writes that add to
// it and lose, again and again, under a burst of them.
func (r *Registry) relayEvents(ctx context.Context) (int, bool, error) {
	rl := r.relay
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for attempt := 0; ; attempt++ {
		n, more, err := r.relayBatch(ctx)
		if errors.Is(err, errRelayRaced) && attempt < maxConflictRetries {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("relay events: %w", err)
		}
		return n, more, nil
	}
}

func (r *Registry) relayBatch(ctx context.Context) (int, bool, error) {
	rl := r.relay
	var (
		entries []outboxEntry
		resume  []byte
		more    bool
		seen    uint64 // the counter in the snapshot
	)
	err := r.view(ctx, func(rd Reader) error {
		entries, resume, more = entries[:0], nil, false
		var err error
		if seen, err = readEventPosition(rd); err != nil {
			return err
		}
		// From the resume key to the end, then from the start up to it.
		// The resume key is a device's start, so a device's entries are
		// all in one of the two scans.
		scan := func(from, until []byte) error {
			return rd.Scan(eventOutboxPrefix, from, false, func(k, v []byte) (bool, error) {
				if until != nil && bytes.Compare(k, until) >= 0 {
					return false, nil
				}
				if len(entries) == rl.batch {
					more = true
					// Cut inside a device: the next batch starts at its
					// start (its first entries are relayed now, the rest
					// then, in order); else at the next device.
					resume = bytes.Clone(outboxDevicePrefix(k))
					return false, nil
				}
				e, err := decodeOutboxEntry(k, v)
				if err != nil {
					return false, err
				}
				entries = append(entries, e)
				return true, nil
			})
		}
		if err := scan(rl.resume, nil); err != nil {
			return err
		}
		if rl.resume != nil && !more {
			return scan(nil, rl.resume)
		}
		return nil
	})
	if err != nil || len(entries) == 0 {
		// Nothing to move (the relay's tick, a wake-up another relay
		// answered first, a single node's start) costs a read, not a
		// write through the commit queue.
		rl.resume = nil
		return 0, false, err
	}
	if rl.afterRead != nil {
		rl.afterRead()
	}
	err = r.write(ctx, func(w Writer) error {
		cur, err := readEventPosition(w)
		if err != nil {
			return err
		}
		if cur != seen {
			return errRelayRaced
		}
		return r.moveToStreams(w, entries)
	})
	if err != nil {
		return 0, false, err
	}
	if more {
		rl.resume = resume
	} else {
		rl.resume = nil
	}
	return len(entries), more, nil
}

// relayLeftovers relays, in a create's transaction, the outbox entries
// of a deleted device whose id the create takes again (see the comment at
// the top of this file): they precede the new device's events, whose
// seqs start over. A no-op on a single node.
func (r *Registry) relayLeftovers(w Writer, dev string) error {
	if !r.events.shared {
		return nil
	}
	var entries []outboxEntry
	if err := w.Scan(eventOutboxDevicePrefix(dev), nil, false, func(k, v []byte) (bool, error) {
		e, err := decodeOutboxEntry(k, v)
		if err != nil {
			return false, err
		}
		entries = append(entries, e)
		return true, nil
	}); err != nil {
		return fmt.Errorf("relay the events of deleted device %s: %w", dev, err)
	}
	return r.moveToStreams(w, entries)
}

// drainOutbox relays every outbox entry (a single node opening a store
// a cluster wrote, whose entries no relay would move otherwise).
func (r *Registry) drainOutbox(ctx context.Context) error {
	for {
		_, more, err := r.relayEvents(ctx)
		if err != nil || !more {
			return err
		}
	}
}

// relayTick is how often the relay loop looks at the outbox without
// being woken: a safety net for lost hints.
const relayTick = 250 * time.Millisecond

// runRelay relays outbox entries while this node holds the relay's lease,
// until ctx ends: at every wake-up (an outbox commit, here or hinted by
// another node) and every relayTick.
func (r *Registry) runRelay(ctx context.Context) {
	rl := r.relay
	ttl := 3 * r.sweepInt
	tick := time.NewTicker(relayTick)
	defer tick.Stop()
	var renew time.Time
	held := false
	for {
		if now := r.now(); !now.Before(renew) {
			h, err := r.lease.Hold(ctx, relayLease, ttl)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Error("event relay lease failed", "err", err)
				h = false
			}
			held = h
			rl.holding.Store(held)
			renew = now.Add(r.sweepInt)
		}
		for held {
			_, more, err := r.relayEvents(ctx)
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, ErrClosed) {
					r.log.Error("event relay failed", "err", err)
				}
				break
			}
			if !more {
				break
			}
		}
		select {
		case <-ctx.Done():
			rl.holding.Store(false)
			return
		case <-rl.wake:
		case <-tick.C:
		}
	}
}

// RelayEvents moves every event waiting in the cluster's outbox into the
// project streams now, whichever node holds the relay's lease (a relay
// transaction is correct on any node); it returns how many it moved. The
// relay does this on its own (Run); this is for tests and tools.
func (r *Registry) RelayEvents(ctx context.Context) (int, error) {
	total := 0
	for {
		n, more, err := r.relayEvents(ctx)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}
