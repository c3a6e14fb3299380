package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// SweepEvents trims the stream: first what is past the backlog bounds
// (older than the retention, or more than MaxEvents positions behind the
// newest), oldest first; then, per project with consumers, what all of
// them acknowledged. Each walk reads from where the last stopped and
// each write deletes at most eventTrimBatch events, so a sweep costs what
// it trims; one with nothing to trim writes nothing. Events are never
// rewritten and only the sweep, which takes turns with itself, deletes
// them, so what a walk reads is still there when its write deletes it.
// It returns how many events it deleted.
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
	acked, err := r.consumerCursors(ctx)
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
// reports whether there may be more. Each project's events are in
// position order, which is commit order, so a project's walk stops at its
// first event within both bounds; the age is read from the record's head.
func (r *Registry) trimBounds(ctx context.Context) (int, bool, error) {
	l := r.events
	if !l.legacyCleared {
		more, err := r.trimLegacyStream(ctx)
		if err != nil || more {
			return 0, more, err
		}
		l.legacyCleared = true
	}
	cutoff := r.now().Add(-l.opts.Retention).UnixNano()
	var keepFrom uint64 // positions below it are past MaxEvents
	last, err := r.lastPosition(ctx)
	if err != nil {
		return 0, false, err
	}
	if last > l.opts.MaxEvents {
		keepFrom = last - l.opts.MaxEvents + 1
	}
	var victims []trimmed
	kept := make(map[string]uint64) // each walked project's first event kept
	err = r.view(ctx, func(rd Reader) error {
		victims, kept = victims[:0], make(map[string]uint64)
		projects, err := eventProjects(rd)
		if err != nil {
			return err
		}
		for _, project := range projects {
			prefix := prefixKey(famEvent, project)
			if err := rd.Scan(prefix, eventKey(project, l.boundFloor[project]), false, func(k, v []byte) (bool, error) {
				pos := binary.BigEndian.Uint64(k[len(prefix):])
				if pos >= keepFrom {
					at, err := eventRecordTime(v)
					if err != nil {
						return false, fmt.Errorf("event %d of %s: %w", pos, project, err)
					}
					if at >= cutoff {
						kept[project] = pos
						return false, nil
					}
				}
				victims = append(victims, trimmed{pos: pos, project: project})
				return len(victims) < eventTrimBatch, nil
			}); err != nil {
				return err
			}
			if len(victims) == eventTrimBatch {
				break
			}
		}
		return nil
	})
	if err == nil && len(victims) > 0 {
		err = r.write(ctx, func(w Writer) error { return deleteEvents(w, victims) })
	}
	if err != nil {
		return 0, false, err
	}
	for _, v := range victims {
		l.boundFloor[v.project] = v.pos + 1
	}
	for project, pos := range kept {
		l.boundFloor[project] = pos
	}
	return len(victims), len(victims) == eventTrimBatch, nil
}

// trimLegacyStream deletes one batch of the stream entries that versions
// before per-project trimming wrote for every event (the events
// themselves are trimmed per project) and reports whether there may be
// more.
func (r *Registry) trimLegacyStream(ctx context.Context) (bool, error) {
	n, err := r.deletePrefixBatch(ctx, eventStreamPrefix, eventTrimBatch)
	if err != nil {
		return false, fmt.Errorf("delete legacy event stream entries: %w", err)
	}
	return n == eventTrimBatch, nil
}

// deletePrefixBatch deletes up to max keys under prefix, the first in
// key order, in one write, and returns how many it deleted: fewer than
// max means none is left.
func (r *Registry) deletePrefixBatch(ctx context.Context, prefix []byte, max int) (int, error) {
	var keys [][]byte
	err := r.view(ctx, func(rd Reader) error {
		keys = keys[:0]
		return rd.Scan(prefix, nil, false, func(k, _ []byte) (bool, error) {
			keys = append(keys, bytes.Clone(k))
			return len(keys) < max, nil
		})
	})
	if err == nil && len(keys) > 0 {
		err = r.write(ctx, func(w Writer) error {
			for _, k := range keys {
				if err := w.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return 0, err
	}
	return len(keys), nil
}

// trimAcked deletes one batch of project's events up to upTo and reports
// whether there may be more.
func (r *Registry) trimAcked(ctx context.Context, project string, upTo uint64) (int, bool, error) {
	l := r.events
	from := l.ackFloor[project]
	if from > upTo {
		return 0, false, nil
	}
	prefix := prefixKey(famEvent, project)
	var victims []trimmed
	err := r.view(ctx, func(rd Reader) error {
		return rd.Scan(prefix, eventKey(project, from), false, func(k, _ []byte) (bool, error) {
			pos := binary.BigEndian.Uint64(k[len(prefix):])
			if pos > upTo {
				return false, nil
			}
			victims = append(victims, trimmed{pos: pos, project: project})
			return len(victims) < eventTrimBatch, nil
		})
	})
	if err == nil && len(victims) > 0 {
		err = r.write(ctx, func(w Writer) error { return deleteEvents(w, victims) })
	}
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
func (r *Registry) consumerCursors(ctx context.Context) (map[string]uint64, error) {
	out := make(map[string]uint64)
	prefix := prefixKey(famEventConsumer)
	err := r.view(ctx, func(rd Reader) error {
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
