package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// deadSweep is a dead run of a node whose sessions are being ended, and
// how far the scan of presence rows got.
type deadSweep struct {
	node string
	seen time.Time // the run's last heartbeat
	// before: only sessions begun before it are the dead run's (a later
	// run of the node, after a restart, holds its own).
	before time.Time
	next   []byte // the presence key to resume at (nil: from the start)
}

const (
	// deadScanPage bounds the presence rows one read of the dead-node
	// sweep scans.
	deadScanPage = 1024
	// deadRowsPerRound bounds the rows one housekeep round scans, so a
	// node's death costs each round a bounded time however many devices
	// the cluster has; the sweep resumes where it stopped.
	deadRowsPerRound = 64 * deadScanPage
)

// sweepDeadNodes ends the sessions of a node that has been dead for
// NodeLiveness (see liveness.go), one node at a time and at most
// deadRowsPerRound rows a call, and reports how many it ended. The
// caller holds the sweeps' lease.
func (r *Registry) sweepDeadNodes(ctx context.Context) (int, error) {
	if r.node == "" {
		return 0, nil
	}
	if _, ok := r.presence.(*StorePresence); !ok {
		return 0, nil
	}
	v := r.members.view.Load()
	if v == nil {
		return 0, nil
	}
	sw := &r.members.sweep
	if sw.node == "" {
		now := r.now()
		for node, m := range v.nodes {
			if node != r.node && !m.absent && m.seen.Before(now.Add(-NodeLiveness)) {
				*sw = deadSweep{node: node, seen: m.seen, before: now}
				break
			}
		}
		if sw.node == "" {
			return 0, nil
		}
	}
	// The record may have been swept (by an earlier holder of the lease)
	// or rewritten (the node came back: it writes its heartbeat before
	// it serves, so its new sessions begin after sw.before) since.
	still, err := r.heartbeatIs(ctx, sw.node, sw.seen)
	if err != nil || !still {
		*sw = deadSweep{}
		return 0, err
	}
	ended, done, err := r.sweepRound(ctx, sw)
	if err != nil || !done {
		return ended, err
	}
	err = r.write(ctx, func(w Writer) error {
		if still, err := heartbeatIs(w, sw.node, sw.seen); err != nil || !still {
			return err
		}
		return w.Delete(nodeBeatKey(sw.node))
	})
	r.log.Info("ended the sessions of a dead node", "node", sw.node, "last_heartbeat", sw.seen)
	*sw = deadSweep{}
	if err != nil {
		return ended, fmt.Errorf("forget dead node: %w", err)
	}
	return ended, nil
}

// sweepPreviousRun ends the sessions of this node's previous run, when
// it was killed and restarted before another node took it for dead (its
// first heartbeat found the previous run's, see Heartbeat). Every node
// runs it for itself, lease or not.
func (r *Registry) sweepPreviousRun(ctx context.Context) (int, error) {
	sw := &r.members.own
	if sw.node == "" {
		p := r.members.previous.Swap(nil)
		if p == nil {
			return 0, nil
		}
		*sw = *p
	}
	ended, done, err := r.sweepRound(ctx, sw)
	if done {
		r.log.Info("ended the sessions of this node's previous run", "last_heartbeat", sw.seen)
		*sw = deadSweep{}
	}
	return ended, err
}

// sweepRound scans at most deadRowsPerRound presence rows from where sw
// got to and ends the sessions of sw's dead run among them; done reports
// that the scan reached the end.
func (r *Registry) sweepRound(ctx context.Context, sw *deadSweep) (ended int, done bool, err error) {
	for scanned := 0; scanned < deadRowsPerRound; {
		rows, next, n, err := r.deadRows(ctx, sw.node, sw.before, sw.next)
		if err != nil {
			return ended, false, err
		}
		scanned += n
		if len(rows) > 0 {
			k, err := r.endDeadSessions(ctx, sw.node, sw.seen, rows)
			ended += k
			if err != nil {
				return ended, false, err
			}
		}
		if sw.next = next; next == nil {
			return ended, true, nil
		}
	}
	return ended, false, nil
}

// heartbeatIs reports whether node's heartbeat record is still the one
// written at seen.
func (r *Registry) heartbeatIs(ctx context.Context, node string, seen time.Time) (bool, error) {
	var still bool
	err := r.view(ctx, func(rd Reader) error {
		var err error
		still, err = heartbeatIs(rd, node, seen)
		return err
	})
	return still, err
}

func heartbeatIs(rd Reader, node string, seen time.Time) (bool, error) {
	b, err := rd.Get(nodeBeatKey(node))
	if errors.Is(err, kv.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read heartbeat of %s: %w", node, err)
	}
	var n NodeInfo
	if err := json.Unmarshal(b, &n); err != nil {
		return false, fmt.Errorf("corrupt heartbeat of %s: %w", node, err)
	}
	return n.Seen.Equal(seen), nil
}

// deadRow is a presence row naming a dead node.
type deadRow struct {
	device string
	row    presenceRow
}

// deadRows scans up to deadScanPage presence rows from from and returns
// the live ones naming node begun before before, the key to resume at
// (nil at the end) and how many it scanned.
func (r *Registry) deadRows(ctx context.Context, node string, before time.Time, from []byte) (rows []deadRow, next []byte, n int, err error) {
	prefix := prefixKey(famPresence)
	err = r.view(ctx, func(rd Reader) error {
		rows, next, n = nil, nil, 0
		return rd.Scan(prefix, from, false, func(k, v []byte) (bool, error) {
			if n == deadScanPage {
				next = bytes.Clone(k)
				return false, nil
			}
			n++
			if len(v) < 16 || !bytes.Equal(v[16:], []byte(node)) {
				return true, nil
			}
			id := string(k[len(prefix):])
			row, ok, err := readPresenceValue(id, v)
			if err != nil || !ok || !row.since.Before(before) {
				return err == nil, err
			}
			rows = append(rows, deadRow{device: id, row: row})
			return true, nil
		})
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("scan sessions of dead node %s: %w", node, err)
	}
	return rows, next, n, nil
}

// endDeadSessions ends the given sessions of the dead node, in writes of
// at most statusFlushChunk devices, each with its OFFLINE status event;
// a row that changed since it was scanned (the device reconnected) is
// left alone.
func (r *Registry) endDeadSessions(ctx context.Context, node string, seen time.Time, rows []deadRow) (int, error) {
	ended := 0
	for len(rows) > 0 {
		batch := rows[:min(len(rows), statusFlushChunk)]
		rows = rows[len(batch):]
		evs := make([]statusEvent, 0, len(batch))
		for _, d := range batch {
			dev, err := r.Device(ctx, d.device)
			if errors.Is(err, ErrNotFound) {
				continue // deleted meanwhile; its row goes with it
			}
			if err != nil {
				return ended, err
			}
			at := seen.UTC()
			if d.row.since.After(at) {
				at = d.row.since
			}
			ev, err := encodeDeviceEvent(dev, ResourceDeviceStatus, EventUpdate, at, statusEventBody{Status: StatusOffline,
				LastOnlineTime: compactOrEmpty(d.row.since), StatusUpdateTime: at.Format(isoMillis)})
			if err != nil {
				return ended, err
			}
			evs = append(evs, statusEvent{encodedEvent: ev, status: StatusOffline, session: d.row.session})
		}
		n := 0
		err := r.write(ctx, func(w Writer) error {
			n = 0
			times := make(map[string]statusTime, len(evs))
			keep := evs[:0:0]
			for _, ev := range evs {
				row, ok, err := readPresence(w, ev.device)
				if err != nil {
					return err
				}
				if !ok || row.node != node || row.session != ev.session {
					continue // reconnected, dropped or ended since the scan
				}
				row.node = ""
				if err := w.Set(presenceKey(ev.device), row.encode()); err != nil {
					return err
				}
				keep = append(keep, ev)
				times[ev.device] = statusTime{at: ev.at, session: ev.session}
				n++
			}
			return r.epochStatusWrites(w, times, keep)
		})
		if err != nil {
			return ended, fmt.Errorf("end sessions of dead node %s: %w", node, err)
		}
		ended += n
	}
	return ended, nil
}
