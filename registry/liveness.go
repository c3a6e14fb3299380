package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Sessions of dead nodes. A node killed without warning leaves its
// devices' presence rows naming it: nothing ends them. On a cluster a row
// only counts as a live session while the node it names is live (its
// heartbeat is at most NodeLiveness old) and the row is of that node's
// current run (it began at or after the node's Started): Lookup through
// the registry, REST status and the router all treat any other row as
// no session. The membership this is judged against is read with each
// heartbeat (memberView), never per lookup.
//
// The status history is completed by the holder of the sweeps' lease:
// once a node's heartbeat is NodeLiveness old, it ends the rows still
// naming that node (only those: a device that reconnected elsewhere has
// a newer row) with an OFFLINE status event each, in bounded batches,
// then deletes the dead node's heartbeat record, which marks the node as
// swept. A node restarted before that finds its previous run's heartbeat
// with its first one and ends that run's sessions itself. The OFFLINE is
// timed at the later of the run's last heartbeat and the session's
// start: the last moment the session was known live (deadnodes.go).

// memberView is the cluster's membership as this node last read it.
type memberView struct {
	read  time.Time
	nodes map[string]member
}

// member is what the liveness of a node's sessions is judged by.
type member struct {
	seen, started time.Time
	absent        bool // no heartbeat record when read
}

// membership is a node's cached memberView (nil until its first
// heartbeat: a node not taking part in membership judges no session).
type membership struct {
	view atomic.Pointer[memberView]
	mu   sync.Mutex // serializes replacing the view
	// sweep is the dead node the sweeps' lease holder is ending the
	// sessions of, and where its scan got to (housekeep's alone).
	sweep deadSweep
	// previous is this node's previous run, found by its first
	// heartbeat, whose sessions are to be ended; own is that sweep once
	// housekeep took it up (housekeep's alone).
	previous atomic.Pointer[deadSweep]
	own      deadSweep
}

// unknownRecheck bounds how often a node named by presence rows but with
// no heartbeat record is looked for again between heartbeats.
const unknownRecheck = time.Second

// refreshMembers reads every heartbeat record into the node's view;
// self is this node's own heartbeat, which counts whatever the store
// said (a heartbeat that failed to write does not make this node's own
// sessions dead). When the store cannot be read the view keeps its age.
func (r *Registry) refreshMembers(ctx context.Context, self NodeInfo) error {
	v := &memberView{read: r.now(), nodes: map[string]member{}}
	err := r.view(ctx, func(rd Reader) error {
		return rd.Scan(nodeBeatsPrefix(), nil, false, func(k, b []byte) (bool, error) {
			var n NodeInfo
			if err := json.Unmarshal(b, &n); err != nil {
				return false, fmt.Errorf("corrupt heartbeat %q: %w", k, err)
			}
			v.nodes[n.Node] = member{seen: n.Seen, started: n.Started}
			return true, nil
		})
	})
	r.members.mu.Lock()
	defer r.members.mu.Unlock()
	if err != nil {
		cur := r.members.view.Load()
		v.nodes = map[string]member{}
		if cur != nil {
			v.read = cur.read
			for k, m := range cur.nodes {
				v.nodes[k] = m
			}
		} else {
			v.read = time.Time{}
		}
	}
	v.nodes[r.node] = member{seen: self.Seen, started: self.Started}
	r.members.view.Store(v)
	if err != nil {
		return fmt.Errorf("read membership: %w", err)
	}
	return nil
}

// memberOf returns what the view says of node, reading its heartbeat
// record (through rd inside a transaction) when the view does not know
// it (a node that joined since the last heartbeat) or knew it absent
// more than unknownRecheck ago.
func (r *Registry) memberOf(ctx context.Context, rd Reader, v *memberView, node string) member {
	now := r.now()
	if m, ok := v.nodes[node]; ok && (!m.absent || now.Sub(m.seen) < unknownRecheck) {
		return m
	}
	// Read without the lock: a reader inside a transaction holds a
	// connection of the engine's pool, and one waiting for the lock
	// would hold it while the lock's holder waits for a connection.
	m := member{absent: true, seen: now}
	read := func(rd Reader) error {
		b, err := rd.Get(nodeBeatKey(node))
		if errors.Is(err, kv.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var n NodeInfo
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("corrupt heartbeat of %s: %w", node, err)
		}
		m = member{seen: n.Seen, started: n.Started}
		return nil
	}
	var err error
	if rd != nil {
		err = read(rd)
	} else {
		err = r.view(ctx, read)
	}
	if err != nil {
		r.log.Error("reading a node's heartbeat", "node", node, "err", err)
		return member{seen: now} // unknown: trust the row
	}
	r.members.mu.Lock()
	defer r.members.mu.Unlock()
	cur := r.members.view.Load()
	next := &memberView{read: cur.read, nodes: make(map[string]member, len(cur.nodes)+1)}
	for k, x := range cur.nodes {
		next.nodes[k] = x
	}
	next.nodes[node] = m
	r.members.view.Store(next)
	return m
}

// sessionLive reports whether s, a device's presence row, is a live
// session: always on a single node and before this node's first
// heartbeat, and while the view is too old to judge by (this node cannot
// read the store; its lookups fail anyway).
func (r *Registry) sessionLive(ctx context.Context, s LiveSession) bool {
	return r.sessionLiveIn(ctx, nil, s)
}

// sessionLiveIn is sessionLive inside a transaction (rd; nil outside).
func (r *Registry) sessionLiveIn(ctx context.Context, rd Reader, s LiveSession) bool {
	v := r.members.view.Load()
	if r.node == "" || v == nil || r.now().Sub(v.read) > NodeLiveness {
		return true
	}
	m := r.memberOf(ctx, rd, v, s.Node)
	if m.absent || m.seen.Before(r.now().Add(-NodeLiveness)) && s.Node != r.node {
		return false
	}
	return !s.Since.Before(m.started)
}

// liveSession is the device's live session: Presence.Lookup, less a dead
// node's (see sessionLive).
func (r *Registry) liveSession(ctx context.Context, id string) (LiveSession, bool, error) {
	return r.liveSessionIn(ctx, nil, id)
}

// liveSessionIn is liveSession inside a transaction: the store is read
// through rd, never in a transaction of its own beside it (which would
// need a second connection of the engine's pool, see
// encodeDeviceChange). rd is nil outside a transaction.
func (r *Registry) liveSessionIn(ctx context.Context, rd Reader, id string) (LiveSession, bool, error) {
	var (
		s   LiveSession
		ok  bool
		err error
	)
	if _, stored := r.presence.(*StorePresence); stored && rd != nil {
		var row presenceRow
		row, ok, err = readPresence(rd, id)
		ok = ok && row.live()
		s = LiveSession{Session: row.session, Node: row.node, Since: row.since}
	} else {
		s, ok, err = r.presence.Lookup(ctx, id)
	}
	if err != nil || !ok {
		return LiveSession{}, false, err
	}
	if !r.sessionLiveIn(ctx, rd, s) {
		return LiveSession{}, false, nil
	}
	return s, true, nil
}
