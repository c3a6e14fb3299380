package registry

import (
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
// A multi-node engine cannot count locally: writes of several nodes
// commit concurrently. It must supply positions from one source that
// orders commits (a database sequence, a log offset, a commit timestamp)
// and, because a later-numbered transaction may commit before an
// earlier-numbered one, publish a visibility horizon: the highest
// position below which every transaction has committed or aborted.
// Readers then read only up to the horizon (Events would take it as an
// upper bound), so a reader never steps past a position that is still to
// commit. nextPosition is the one place that assigns positions.

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
	last atomic.Uint64 // the last position handed out

	// Status changes waiting for the next status flush; guarded by the
	// registry's statusMu, in step with its statusQ.
	status []statusChange
	// OFFLINE changes held for OfflineGrace, oldest first, and the time
	// of each device's one still pending (a reconnect removes it from the
	// map; the queue entry is then skipped when it comes due).
	offlineQ []statusChange
	offline  map[string]time.Time

	// sweep makes trims take turns; the floors below are where the walks
	// of the stream (streamFloor) and of each project's events (ackFloor)
	// resume, so a trim never steps again over what it deleted.
	sweep       sync.Mutex
	streamFloor uint64
	ackFloor    map[string]uint64
}

// openEventLog restores the position counter above every position stored
// or trimmed, so positions keep increasing across restarts.
func openEventLog(s kv.Store, o EventOptions) (*eventLog, error) {
	l := &eventLog{opts: o.withDefaults(), ackFloor: make(map[string]uint64), offline: make(map[string]time.Time)}
	var last uint64
	err := s.View(context.Background(), func(rd Reader) error {
		if err := rd.Scan(eventStreamPrefix, nil, true, func(k, _ []byte) (bool, error) {
			last = max(last, streamPosition(k))
			return false, nil
		}); err != nil {
			return err
		}
		return rd.Scan(prefixKey("eh"), nil, false, func(_, v []byte) (bool, error) {
			if len(v) == 8 {
				last = max(last, binary.BigEndian.Uint64(v))
			}
			return true, nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("restore event position: %w", err)
	}
	l.last.Store(last)
	return l, nil
}

// nextPosition hands out the next stream position. It is called only by
// writes, which run in commit order on the committer (see the comment at
// the top of this file for what a multi-node engine must do instead).
func (l *eventLog) nextPosition() uint64 { return l.last.Add(1) }

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
	if cursor > r.events.last.Load() {
		return nil, fmt.Errorf("%w: %d", ErrCursorAhead, cursor)
	}
	page := &EventPage{Next: cursor}
	err := r.view(ctx, func(rd Reader) error {
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
