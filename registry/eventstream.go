package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// The event stream: how events are ordered, read, acknowledged and
// trimmed. (What an event is and how a write records one: events.go.)
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

	// sweep makes trims take turns; the floors below are where the walks
	// of the stream (streamFloor) and of each project's events (ackFloor)
	// resume, so a trim never steps again over what it deleted.
	sweep       sync.Mutex
	streamFloor uint64
	ackFloor    map[string]uint64
}

// openEventLog restores the position counter above every position stored
// or trimmed, so positions keep increasing across restarts.
func openEventLog(s Store, o EventOptions) (*eventLog, error) {
	l := &eventLog{opts: o.withDefaults(), ackFloor: make(map[string]uint64)}
	var last uint64
	err := s.View(func(rd Reader) error {
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
	err := r.store.View(func(rd Reader) error {
		if cursor > 0 {
			trimmed, err := readEventHorizon(rd, project)
			if err != nil {
				return err
			}
			if cursor < trimmed {
				return fmt.Errorf("%w: %d; events up to %d were trimmed", ErrEventsTrimmed, cursor, trimmed)
			}
		}
		prefix := prefixKey("ep", project)
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
	if errors.Is(err, ErrNoKey) {
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

// EventConsumer is a named reader of a project's events whose cursor the
// registry keeps. Events every consumer of a project has acknowledged are
// trimmed; a project without consumers keeps its events until the
// backlog bounds (EventOptions) trim them.
type EventConsumer struct {
	ProjectID string    `json:"-"`
	Name      string    `json:"-"`
	Cursor    uint64    `json:"cursor"` // the last position acknowledged
	Created   time.Time `json:"created"`
}

// AddEventConsumer registers a consumer, which starts before the oldest
// event kept; it returns the existing one if name is taken.
func (r *Registry) AddEventConsumer(ctx context.Context, project, name string) (*EventConsumer, error) {
	if err := checkID("name", name, 64, true); err != nil {
		return nil, err
	}
	c := &EventConsumer{ProjectID: project, Name: name, Created: r.now().UTC()}
	err := r.write(ctx, func(w Writer) error {
		cur, err := getEventConsumer(w, project, name)
		if err == nil {
			c = cur
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		c.Cursor = 0
		return putEventConsumer(w, c)
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// EventConsumer returns a consumer and its acknowledged cursor.
func (r *Registry) EventConsumer(ctx context.Context, project, name string) (*EventConsumer, error) {
	var c *EventConsumer
	err := r.store.View(func(rd Reader) error {
		var err error
		c, err = getEventConsumer(rd, project, name)
		return err
	})
	return c, err
}

// AckEvents records that a consumer has processed every event up to and
// including cursor. Acknowledgements only move forward: an older cursor
// than the stored one changes nothing.
func (r *Registry) AckEvents(ctx context.Context, project, name string, cursor uint64) error {
	if cursor > r.events.last.Load() {
		return fmt.Errorf("%w: %d", ErrCursorAhead, cursor)
	}
	return r.write(ctx, func(w Writer) error {
		c, err := getEventConsumer(w, project, name)
		if err != nil {
			return err
		}
		if cursor <= c.Cursor {
			return nil
		}
		c.Cursor = cursor
		return putEventConsumer(w, c)
	})
}

// DeleteEventConsumer removes a consumer; what only it held back is
// trimmed at the next sweep.
func (r *Registry) DeleteEventConsumer(ctx context.Context, project, name string) error {
	return r.write(ctx, func(w Writer) error {
		if _, err := getEventConsumer(w, project, name); err != nil {
			return err
		}
		return w.Delete(eventConsumerKey(project, name))
	})
}

func getEventConsumer(rd Reader, project, name string) (*EventConsumer, error) {
	v, err := rd.Get(eventConsumerKey(project, name))
	if errors.Is(err, ErrNoKey) {
		return nil, &NotFoundError{Kind: "event consumer", ID: name}
	}
	if err != nil {
		return nil, fmt.Errorf("read event consumer %s: %w", name, err)
	}
	c := &EventConsumer{ProjectID: project, Name: name}
	if err := json.Unmarshal(v, c); err != nil {
		return nil, fmt.Errorf("decode event consumer %s: %w", name, err)
	}
	return c, nil
}

func putEventConsumer(w Writer, c *EventConsumer) error {
	b, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode event consumer %s: %w", c.Name, err)
	}
	return w.Set(eventConsumerKey(c.ProjectID, c.Name), b)
}

// SweepEvents trims the stream: first what is past the backlog bounds
// (older than the retention, or more than MaxEvents positions behind the
// newest), oldest first; then, per project with consumers, what all of
// them acknowledged. Each walk resumes where the last stopped and each
// write deletes at most eventTrimBatch events, so a sweep costs what it
// trims. It returns how many events it deleted.
func (r *Registry) SweepEvents(ctx context.Context) (int, error) {
	l := r.events
	l.sweep.Lock()
	defer l.sweep.Unlock()
	total := 0
	for {
		n, more, err := r.trimBounds(ctx)
		total += n
		if err != nil {
			return total, err
		}
		if !more {
			break
		}
	}
	acked, err := r.consumerCursors()
	if err != nil {
		return total, err
	}
	for project, upTo := range acked {
		for {
			n, more, err := r.trimAcked(ctx, project, upTo)
			total += n
			if err != nil {
				return total, err
			}
			if !more {
				break
			}
		}
	}
	return total, nil
}

// trimBounds deletes one batch of events past the backlog bounds and
// reports whether there may be more.
func (r *Registry) trimBounds(ctx context.Context) (int, bool, error) {
	l := r.events
	cutoff := r.now().Add(-l.opts.Retention).UnixNano()
	var keepFrom uint64 // positions below it are past MaxEvents
	if last := l.last.Load(); last > l.opts.MaxEvents {
		keepFrom = last - l.opts.MaxEvents + 1
	}
	var victims []trimmed
	var next uint64
	err := r.write(ctx, func(w Writer) error {
		victims, next = victims[:0], 0
		if err := w.Scan(eventStreamPrefix, eventStreamKey(l.streamFloor), false, func(k, v []byte) (bool, error) {
			pos := streamPosition(k)
			if len(v) < 8 {
				return false, fmt.Errorf("event stream entry %d: corrupt", pos)
			}
			if pos >= keepFrom && int64(binary.BigEndian.Uint64(v)) >= cutoff {
				next = pos
				return false, nil
			}
			victims = append(victims, trimmed{pos: pos, project: string(v[8:])})
			return len(victims) < eventTrimBatch, nil
		}); err != nil {
			return err
		}
		return deleteEvents(w, victims)
	})
	if err != nil || len(victims) == 0 {
		return 0, false, err
	}
	l.streamFloor = victims[len(victims)-1].pos + 1
	if next != 0 {
		l.streamFloor = next
	}
	return len(victims), len(victims) == eventTrimBatch, nil
}

// trimAcked deletes one batch of project's events up to upTo and reports
// whether there may be more.
func (r *Registry) trimAcked(ctx context.Context, project string, upTo uint64) (int, bool, error) {
	l := r.events
	from := l.ackFloor[project]
	if from > upTo {
		return 0, false, nil
	}
	prefix := prefixKey("ep", project)
	var victims []trimmed
	err := r.write(ctx, func(w Writer) error {
		victims = victims[:0]
		if err := w.Scan(prefix, eventKey(project, from), false, func(k, _ []byte) (bool, error) {
			pos := binary.BigEndian.Uint64(k[len(prefix):])
			if pos > upTo {
				return false, nil
			}
			victims = append(victims, trimmed{pos: pos, project: project})
			return len(victims) < eventTrimBatch, nil
		}); err != nil {
			return err
		}
		return deleteEvents(w, victims)
	})
	if err != nil {
		return 0, false, err
	}
	if len(victims) < eventTrimBatch {
		l.ackFloor[project] = upTo + 1
		return len(victims), false, nil
	}
	l.ackFloor[project] = victims[len(victims)-1].pos + 1
	return len(victims), true, nil
}

type trimmed struct {
	pos     uint64
	project string
}

// deleteEvents deletes events (ascending positions) and raises their
// projects' trim horizons, which tell a reader whose cursor is older that
// it missed events.
func deleteEvents(w Writer, victims []trimmed) error {
	horizon := make(map[string]uint64)
	for _, v := range victims {
		if err := w.Delete(eventStreamKey(v.pos)); err != nil {
			return err
		}
		if err := w.Delete(eventKey(v.project, v.pos)); err != nil {
			return err
		}
		horizon[v.project] = v.pos
	}
	for project, pos := range horizon {
		cur, err := readEventHorizon(w, project)
		if err != nil {
			return err
		}
		if pos > cur {
			if err := w.Set(eventHorizonKey(project), binary.BigEndian.AppendUint64(nil, pos)); err != nil {
				return err
			}
		}
	}
	return nil
}

// consumerCursors returns, per project with consumers, the lowest cursor
// its consumers acknowledged.
func (r *Registry) consumerCursors() (map[string]uint64, error) {
	out := make(map[string]uint64)
	prefix := prefixKey("ec")
	err := r.store.View(func(rd Reader) error {
		return rd.Scan(prefix, nil, false, func(k, v []byte) (bool, error) {
			rest := k[len(prefix):]
			i := bytes.IndexByte(rest, sep)
			if i < 0 {
				return false, fmt.Errorf("event consumer key %q: corrupt", k)
			}
			var c EventConsumer
			if err := json.Unmarshal(v, &c); err != nil {
				return false, fmt.Errorf("decode event consumer %q: %w", k, err)
			}
			project := string(rest[:i])
			if cur, ok := out[project]; !ok || c.Cursor < cur {
				out[project] = c.Cursor
			}
			return true, nil
		})
	})
	return out, err
}
