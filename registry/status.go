package registry

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// Session identifies one live connection of a device. A device that
// reconnects gets a new Session, so the old connection's late disconnect
// does not mark the new one offline.
type Session uint64

// LocalPresence is the single node's Presence: the in-memory set of
// connected devices. Connection status is live state: after a restart
// nobody is connected, so it is not stored (only its change time is,
// lazily). Sharded to keep connect storms from contending on one lock.
type LocalPresence struct {
	seed   maphash.Seed
	node   string
	next   atomic.Uint64
	shards [64]presenceShard
}

var _ Presence = (*LocalPresence)(nil)

type presenceShard struct {
	mu sync.Mutex
	m  map[string]LiveSession
}

// NewLocalPresence returns an empty presence for the named node. Its
// sessions are numbered from the node's name and the clock, so that they
// differ from other nodes' and from this node's before a restart.
func NewLocalPresence(node string, now time.Time) *LocalPresence {
	p := &LocalPresence{seed: maphash.MakeSeed(), node: node}
	p.next.Store(nodeHash(node)<<40 | uint64(now.UnixNano())&(1<<40-1))
	for i := range p.shards {
		p.shards[i].m = make(map[string]LiveSession)
	}
	return p
}

func (p *LocalPresence) shard(id string) *presenceShard {
	return &p.shards[maphash.String(p.seed, id)%uint64(len(p.shards))]
}

// Connect records a new session held by this node.
func (p *LocalPresence) Connect(_ context.Context, id string, at time.Time) (Session, LiveSession, bool, error) {
	s := Session(p.next.Add(1))
	sh := p.shard(id)
	sh.mu.Lock()
	prev, was := sh.m[id]
	sh.m[id] = LiveSession{Session: s, Node: p.node, Since: at}
	sh.mu.Unlock()
	return s, prev, was, nil
}

// Disconnect removes the session if it is still the device's current
// one; otherwise it reports whether another (newer) session is current.
func (p *LocalPresence) Disconnect(_ context.Context, id string, s Session) (ended, superseded bool, since time.Time, err error) {
	sh := p.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.m[id]
	switch {
	case !ok:
		return false, false, time.Time{}, nil
	case cur.Session == s:
		delete(sh.m, id)
		return true, false, cur.Since, nil
	default:
		return false, true, time.Time{}, nil
	}
}

// Drop forgets the device's session.
func (p *LocalPresence) Drop(_ context.Context, id string) error {
	sh := p.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
	return nil
}

// Lookup returns the device's current session.
func (p *LocalPresence) Lookup(_ context.Context, id string) (LiveSession, bool, error) {
	sh := p.shard(id)
	sh.mu.Lock()
	s, ok := sh.m[id]
	sh.mu.Unlock()
	return s, ok, nil
}

// Online counts the connected devices.
func (p *LocalPresence) Online() int {
	n := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// Online reports how many devices are connected (on a cluster, to this
// node).
func (r *Registry) Online() int { return r.presence.Online() }

func (r *Registry) fillStatus(d *Device) { r.fillStatusIn(nil, d) }

// fillStatusIn is fillStatus inside a transaction: presence is read
// through rd (see encodeDeviceChange).
func (r *Registry) fillStatusIn(rd Reader, d *Device) {
	switch {
	case d.Frozen:
		d.Status = StatusFrozen
	case d.ActiveTime.IsZero():
		d.Status = StatusInactive
	default:
		d.Status = StatusOffline
		s, ok, err := r.liveSessionIn(context.Background(), rd, d.DeviceID)
		if err != nil {
			r.log.Error("looking up session", "device_id", d.DeviceID, "err", err)
		}
		if ok {
			d.Status = StatusOnline
			if s.Since.After(d.StatusTime) {
				d.StatusTime = s.Since
			}
		}
	}
}

// Superseded reports whether a newer session of the device than s is
// known here: on a cluster, one another node took the device over with
// while s was being established (its kick may have found nothing to
// close yet). On one node an adapter orders its own sessions: false.
func (r *Registry) Superseded(id string, s Session) bool {
	sp, ok := r.presence.(*StorePresence)
	return ok && sp.superseded(id, s)
}

// Connected records a successful connection of a device over any
// protocol. The first one activates the device durably: it sets
// active_time and cancels the unconnected-registration deadline for good.
// A frozen or deleted device gets ErrFrozen / ErrNotFound.
//
// On a cluster the new session wins wherever the old one is: the node
// holding that one is asked to close it (see kickElsewhere).
func (r *Registry) Connected(ctx context.Context, id string) (Session, error) {
	return r.connected(ctx, id, false)
}

// Resumed is Connected for a session restored from its session record
// after this node restarted (see SessionRecord): the device never went
// offline as far as it knows, and its status was left ONLINE, so no
// status event is reported unless another node held it meanwhile.
func (r *Registry) Resumed(ctx context.Context, id string) (Session, error) {
	return r.connected(ctx, id, true)
}

func (r *Registry) connected(ctx context.Context, id string, resumed bool) (Session, error) {
	d, err := r.device(ctx, id, false)
	if err != nil {
		return 0, err
	}
	if d.Frozen {
		return 0, ErrFrozen
	}
	now := r.now().UTC()
	if d.ActiveTime.IsZero() {
		_, err := r.mutateDevice(ctx, "", id, func(d *Device) error {
			if d.Frozen {
				return ErrFrozen
			}
			if d.ActiveTime.IsZero() {
				d.ActiveTime = now
			}
			d.ExpireAt = time.Time{}
			d.StatusTime = now
			return nil
		})
		if err != nil {
			return 0, err
		}
	}
	s, prev, superseded, err := r.presence.Connect(ctx, id, now)
	if err != nil {
		return 0, fmt.Errorf("record session of %s: %w", id, err)
	}
	elsewhere := superseded && prev.Node != r.node
	// A dead node (liveness.go) is not asked: the call would wait for
	// a node that cannot answer while the device's reconnect waits.
	if elsewhere && r.sessionLive(ctx, prev) {
		r.kickElsewhere(ctx, prev.Node, id, s)
	}
	// A session taking over a live one of this node (a re-registration, a
	// client reconnecting before its old connection is seen gone) changes
	// the status time but not the status: no ONLINE event. One taking
	// over another node's reports ONLINE, which the status flush drops if
	// the device's last recorded status is ONLINE already.
	r.queueStatus(statusChange{device: id, session: s, status: StatusOnline, at: now, lastOnline: now,
		still: (superseded || resumed) && !elsewhere})
	return s, nil
}

// Disconnected ends a session. It is a no-op if the device has connected
// again since (the new session is current), and then reports so.
func (r *Registry) Disconnected(id string, s Session) (superseded bool) {
	ended, superseded, since, err := r.presence.Disconnect(context.Background(), id, s)
	if err != nil {
		r.log.Error("recording disconnect", "device_id", id, "err", err)
		return false
	}
	if ended {
		r.queueStatus(statusChange{device: id, session: s, status: StatusOffline, at: r.now().UTC(), lastOnline: since})
	}
	return superseded
}

// statusTime is the status change time queued for a device, and the
// session that made the change.
type statusTime struct {
	at      time.Time
	session Session
}

// queueStatus remembers a status change (its time and its event) to
// persist in the next flush; connects and disconnects do not wait for the
// disk.
func (r *Registry) queueStatus(c statusChange) {
	l := r.events
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	r.statusQ[c.device] = statusTime{at: c.at, session: c.session}
	switch {
	case c.still:
	case c.status == StatusOffline && l.opts.OfflineGrace > 0:
		l.offline[c.device] = c.at
		l.offlineQ = append(l.offlineQ, c)
	case c.status == StatusOnline && !l.offline[c.device].IsZero():
		// Back within the grace: never reported offline.
		delete(l.offline, c.device)
	default:
		l.status = append(l.status, c)
	}
}

// flushStatus persists queued status change times in one write, each
// under the device's small status key (see statusTimeKey), with the
// status events due: those queued, and the OFFLINE ones whose grace has
// run out.
func (r *Registry) flushStatus(ctx context.Context) error {
	return r.flushStatusDue(ctx, r.now())
}

// flushStatusDue is flushStatus with the held OFFLINE changes due at
// now (at shutdown, all of them).
func (r *Registry) flushStatusDue(ctx context.Context, now time.Time) error {
	l := r.events
	r.statusMu.Lock()
	for len(l.offlineQ) > 0 && !now.Before(l.offlineQ[0].at.Add(l.opts.OfflineGrace)) {
		c := l.offlineQ[0]
		l.offlineQ[0] = statusChange{}
		l.offlineQ = l.offlineQ[1:]
		if l.offline[c.device].Equal(c.at) { // not back since, nor gone again
			delete(l.offline, c.device)
			l.status = append(l.status, c)
		}
	}
	if len(l.offlineQ) == 0 {
		l.offlineQ = nil // let the drained array go
	}
	q, changes := r.statusQ, r.events.status
	if len(q) == 0 && len(changes) == 0 {
		r.statusMu.Unlock()
		return nil
	}
	r.statusQ, r.events.status = make(map[string]statusTime), nil
	r.statusMu.Unlock()
	return r.writeStatus(ctx, q, changes)
}

// statusWrites persists status change times of the devices that still
// exist (a single node: every change is the newest).
func statusWrites(q map[string]statusTime) func(Writer) error {
	return func(w Writer) error {
		for id, st := range q {
			if ok, err := deviceExists(w, id); err != nil {
				return err
			} else if !ok {
				continue // deleted meanwhile
			}
			if err := w.Set(statusTimeKey(id), binary.BigEndian.AppendUint64(nil, uint64(st.at.UnixNano()))); err != nil {
				return err
			}
		}
		return nil
	}
}

// withStatusTime fills in the persisted status change time of a device
// read for display (REST); the authentication paths do not need it.
func (r *Registry) withStatusTime(ctx context.Context, d *Device) {
	var at time.Time
	_ = r.view(ctx, func(rd Reader) error {
		v, err := rd.Get(statusTimeKey(d.DeviceID))
		if err == nil && len(v) >= 8 { // a cluster's record goes on (see statusRecord)
			at = time.Unix(0, int64(binary.BigEndian.Uint64(v))).UTC()
		}
		return nil
	})
	if at.After(d.StatusTime) {
		d.StatusTime = at
	}
	r.fillStatus(d)
}
