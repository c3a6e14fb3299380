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

	"github.com/iotgate/iotgate/registry/kv"
)

// The event stream: how events are ordered and read. What an event is and
// how a write records one: events.go and eventbodies.go; status events:
// eventstatus.go; consumers and their acknowledgements: eventconsumers.go;
// trimming: eventtrim.go.
//
// Every event has a position, handed out by eventLog.nextPosition inside
// the write that records it. The positions of committed events increase
// in commit order, which is what lets a reader resume from the last
// position it saw without missing an event committed later: on one node
// every write runs, serially and in commit order, on the committer
// goroutine (see Registry.write), so a node-local counter, restored at
// start-up above every position stored or trimmed, is enough. Positions
// of writes that were refused or failed are skipped: positions have gaps,
// per-device seqs have none.
//
// Nodes of a cluster cannot count locally: writes of several nodes
// commit concurrently. Nor do they take positions in their writes: a
// counter in the store, read and rewritten by every write that records
// an event, made such writes of all nodes conflict on one row and run
// one after the other (BENCHMARKS.md, "Capacity model"). There
// (Options.Node set) a write that records an event stores it in the
// cluster's outbox instead, under its device and its per-device seq
// (eventOutboxKey), and touches no key another device's write touches.
// One relay per cluster (the holder of a lease) moves outbox entries
// into the project streams in batches: each batch is one transaction
// that reads the last position handed out (eventPositionKey, which only
// relay transactions write), gives its events the next positions,
// deletes them from the outbox and stores the counter. Relay
// transactions conflict with each other on the counter, so batches
// commit one after the other and positions still increase in commit
// order: no reader sees a position whose predecessors are still to
// commit. Each device's events enter the stream in seq order, exactly
// once; why, and how the relay is woken: eventrelay.go. An event waits
// in the outbox for about a relay transaction (woken by the commit),
// which is the latency a cluster adds to forwarding; consumers and the
// trims (eventtrim.go, eventbacklog.go) see the streams only, so an
// event in the outbox counts in no consumer's lag or backlog until it is
// relayed. takePositions is the one place that assigns a cluster's
// positions.

// Event backlog defaults.
const (
	DefaultEventRetention = 72 * time.Hour
	DefaultMaxEvents      = 1_000_000
	// MaxEventsPage bounds one read of the stream.
	MaxEventsPage = 1000
	// eventTrimBatch bounds the events one trimming write deletes.
	eventTrimBatch = 512
)

// Errors of stream reads and acknowledgements.
var (
	// ErrCursorAhead: the cursor is past every position handed out, so
	// it was not given by this stream.
	ErrCursorAhead = errors.New("cursor is ahead of the event stream")
	// ErrEventsTrimmed: events after the cursor were trimmed (acknowledged
	// by every consumer, or past the retention bounds) and are gone.
	ErrEventsTrimmed = errors.New("events after the cursor were trimmed")
)

// EventOptions bounds the event backlog; zero fields take the defaults.
type EventOptions struct {
	// Retention: older events are trimmed.
	Retention time.Duration
	// MaxEvents: the stream keeps at most the last MaxEvents positions
	// (fewer events, where positions were skipped).
	MaxEvents uint64
	// OfflineGrace delays a device's OFFLINE event: one that connects
	// again within it is never reported offline (neither its OFFLINE nor
	// its ONLINE event is recorded), as IoTDA reports an MQTT device
	// OFFLINE about a minute after its disconnect. Zero reports every
	// change at the next status flush. The device's status over REST is
	// live either way.
	OfflineGrace time.Duration
}

func (o EventOptions) withDefaults() EventOptions {
	if o.Retention <= 0 {
		o.Retention = DefaultEventRetention
	}
	if o.MaxEvents == 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	return o
}

// eventLog is the node's state of the stream.
type eventLog struct {
	opts EventOptions
	last atomic.Uint64 // the last position handed out (on one node)
	// shared: positions come from the store (a cluster), not from last.
	shared bool

	// Status changes waiting for the next status flush; guarded by the
	// registry's statusMu, in step with its statusQ.
	status []statusChange
	// OFFLINE changes held for OfflineGrace, oldest first, and the time
	// of each device's one still pending (a reconnect removes it from the
	// map; the queue entry is then skipped when it comes due).
	offlineQ []statusChange
	offline  map[string]time.Time

	// sweep makes trims take turns; the floors below are where the walks
	// of each project's events resume, past the bounds (boundFloor) and
	// past what consumers acknowledged (ackFloor), so a trim never steps
	// again over what it deleted. legacyCleared: the store holds no
	// legacy stream entry any more.
	sweep         sync.Mutex
	boundFloor    map[string]uint64
	ackFloor      map[string]uint64
	legacyCleared bool
}

// openEventLog restores the position counter above every position stored
// or trimmed, so positions keep increasing across restarts; on a cluster
// (shared) it raises the stored counter there instead, in a transaction,
// for a store that was a single node's until now.
func openEventLog(s kv.Store, o EventOptions, shared bool) (*eventLog, error) {
	l := &eventLog{opts: o.withDefaults(), boundFloor: make(map[string]uint64), ackFloor: make(map[string]uint64),
		offline: make(map[string]time.Time), shared: shared}
	var last uint64
	restore := func(rd Reader) error {
		last = 0
		stored, err := readEventPosition(rd)
		if err != nil {
			return err
		}
		last = stored
		// The last event of each project, and a legacy stream entry
		// (its event may have been trimmed since, its horizon kept).
		projects, err := eventProjects(rd)
		if err != nil {
			return err
		}
		for _, p := range projects {
			prefix := prefixKey(famEvent, p)
			if err := rd.Scan(prefix, nil, true, func(k, _ []byte) (bool, error) {
				if len(k) == len(prefix)+8 {
					last = max(last, binary.BigEndian.Uint64(k[len(prefix):]))
				}
				return false, nil
			}); err != nil {
				return err
			}
		}
		if err := rd.Scan(eventStreamPrefix, nil, true, func(k, _ []byte) (bool, error) {
			last = max(last, streamPosition(k))
			return false, nil
		}); err != nil {
			return err
		}
		return rd.Scan(prefixKey(famEventHorizon), nil, false, func(_, v []byte) (bool, error) {
			if len(v) == 8 {
				last = max(last, binary.BigEndian.Uint64(v))
			}
			return true, nil
		})
	}
	var err error
	if shared {
		for attempt := 0; ; attempt++ {
			err = s.Update(context.Background(), func(t kv.Txn) error {
				if err := restore(t); err != nil {
					return err
				}
				return t.Set(eventPositionKey, binary.BigEndian.AppendUint64(nil, last))
			})
			if !errors.Is(err, kv.ErrConflict) || attempt >= maxConflictRetries {
				break
			}
		}
	} else {
		err = s.View(context.Background(), restore)
	}
	if err != nil {
		return nil, fmt.Errorf("restore event position: %w", err)
	}
	l.last.Store(last)
	return l, nil
}

// readEventPosition reads the cluster's last position handed out (0 when
// there is none: a single node's store).
func readEventPosition(rd Reader) (uint64, error) {
	v, err := rd.Get(eventPositionKey)
	if errors.Is(err, kv.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read event position: %w", err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("event position: corrupt (%d bytes)", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// nextPosition hands out the next stream position to a write recording
// an event. On one node writes run in commit order on the committer, so
// a counter in memory does; on a cluster the counter is the store's (see
// the comment at the top of this file).
func (l *eventLog) nextPosition(w Writer) (uint64, error) {
	if !l.shared {
		return l.last.Add(1), nil
	}
	n, err := readEventPosition(w)
	if err != nil {
		return 0, err
	}
	n++
	if err := w.Set(eventPositionKey, binary.BigEndian.AppendUint64(make([]byte, 0, 8), n)); err != nil {
		return 0, err
	}
	return n, nil
}

// takePositions hands out n consecutive positions to a relay
// transaction (eventrelay.go) and returns the first: on a cluster from
// the store's counter, which only relay transactions write, so they
// conflict with each other and commit one after the other; on one node
// (a start-up drain) from the node's counter.
func (l *eventLog) takePositions(w Writer, n uint64) (uint64, error) {
	if !l.shared {
		return l.last.Add(n) - n + 1, nil
	}
	last, err := readEventPosition(w)
	if err != nil {
		return 0, err
	}
	if err := w.Set(eventPositionKey, binary.BigEndian.AppendUint64(make([]byte, 0, 8), last+n)); err != nil {
		return 0, err
	}
	return last + 1, nil
}

// lastPosition is the last position handed out: on a cluster, by any
// node.
func (r *Registry) lastPosition(ctx context.Context) (uint64, error) {
	l := r.events
	if !l.shared {
		return l.last.Load(), nil
	}
	var n uint64
	err := r.view(ctx, func(rd Reader) error {
		var err error
		n, err = readEventPosition(rd)
		return err
	})
	return n, err
}

// StreamHead is the last position handed out, by any node: how far a
// consumer's cursor is behind it bounds the events it has still to read
// (positions are shared by every project's events, and have gaps). On a
// cluster, events still in the outbox (eventrelay.go) have no position
// yet and are not counted.
func (r *Registry) StreamHead(ctx context.Context) (uint64, error) { return r.lastPosition(ctx) }

// eventProjects lists the projects that have events, one seek each.
func eventProjects(rd Reader) ([]string, error) {
	base := prefixKey(famEvent)
	var out []string
	var from []byte
	for {
		var next string
		var corrupt []byte
		if err := rd.Scan(base, from, false, func(k, _ []byte) (bool, error) {
			rest := k[len(base):]
			if i := bytes.IndexByte(rest, sep); i > 0 {
				next = string(rest[:i])
			} else {
				corrupt = bytes.Clone(k)
			}
			return false, nil
		}); err != nil {
			return nil, fmt.Errorf("list projects with events: %w", err)
		}
		if corrupt != nil {
			return nil, fmt.Errorf("event key %q: corrupt", corrupt)
		}
		if next == "" {
			return out, nil
		}
		out = append(out, next)
		from = eventProjectsAfter(next)
	}
}

func streamPosition(k []byte) uint64 {
	if len(k) < len(eventStreamPrefix)+8 {
		return 0
	}
	return binary.BigEndian.Uint64(k[len(eventStreamPrefix):])
}

// EventPage is one read of a project's events.
type EventPage struct {
	Events []Event
	// Next is the cursor to read on from: the last event's position, or
	// the cursor read from when there was none.
	Next uint64
}

// Events returns up to limit of project's events after the cursor, in
// stream order; cursor 0 reads from the oldest kept. It fails with
// ErrCursorAhead for a cursor this stream never gave, and with
// ErrEventsTrimmed when events after the cursor were trimmed.
func (r *Registry) Events(ctx context.Context, project string, cursor uint64, limit int) (*EventPage, error) {
	if limit < 1 || limit > MaxEventsPage {
		return nil, invalid("limit", "must be 1 to %d", MaxEventsPage)
	}
	last, err := r.lastPosition(ctx)
	if err != nil {
		return nil, err
	}
	if cursor > last {
		return nil, fmt.Errorf("%w: %d", ErrCursorAhead, cursor)
	}
	page := &EventPage{Next: cursor}
	err = r.view(ctx, func(rd Reader) error {
		if cursor > 0 {
			trimmed, err := readEventHorizon(rd, project)
			if err != nil {
				return err
			}
			if cursor < trimmed {
				return fmt.Errorf("%w: %d; events up to %d were trimmed", ErrEventsTrimmed, cursor, trimmed)
			}
		}
		prefix := prefixKey(famEvent, project)
		return rd.Scan(prefix, eventKey(project, cursor+1), false, func(k, v []byte) (bool, error) {
			pos := binary.BigEndian.Uint64(k[len(prefix):])
			ev, err := decodeEvent(project, pos, v)
			if err != nil {
				return false, err
			}
			page.Events = append(page.Events, ev)
			page.Next = pos
			return len(page.Events) < limit, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return page, nil
}

func readEventHorizon(rd Reader, project string) (uint64, error) {
	v, err := rd.Get(eventHorizonKey(project))
	if errors.Is(err, kv.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("event horizon of %s: corrupt", project)
	}
	return binary.BigEndian.Uint64(v), nil
}
