package registry

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// StorePresence is the Presence of a node in a cluster: the store's row
// ps/{device} (node, session, since) is the authoritative record of who
// holds a device's session, so every node sees the same answer and the
// newest connect wins whatever node it reached. Sessions are epochs: a
// device's sessions are numbered in increasing order across all nodes
// (each connect takes a number above the row's, in the transaction that
// replaces it), so "newer" is a comparison.
//
// Connects and disconnects write the row through the engine's group
// commit (a connect storm is a few batches). The node's own sessions are
// also kept in memory, for Online and so that a disconnect of a session
// this node already knows superseded costs no store access. Lookup reads
// the row: it is the router's question, not the connect path's.
type StorePresence struct {
	store  kv.Store
	node   string
	seed   maphash.Seed
	shards [64]presenceShard // this node's sessions
}

var _ Presence = (*StorePresence)(nil)

// NewStorePresence returns the presence of the named node on store.
func NewStorePresence(store kv.Store, node string) *StorePresence {
	p := &StorePresence{store: store, node: node, seed: maphash.MakeSeed()}
	for i := range p.shards {
		p.shards[i].m = make(map[string]LiveSession)
	}
	return p
}

// presenceRow is the stored session of a device. An ended session keeps
// its row (node "") so the next one still numbers above it.
type presenceRow struct {
	session Session
	since   time.Time
	node    string // "" once the session ended
}

func (r presenceRow) live() bool { return r.node != "" }

func (r presenceRow) encode() []byte {
	b := make([]byte, 16, 16+len(r.node))
	binary.BigEndian.PutUint64(b, uint64(r.session))
	binary.BigEndian.PutUint64(b[8:], uint64(r.since.UnixNano()))
	return append(b, r.node...)
}

// readPresence reads the device's row; ok is false when it has none.
func readPresence(rd Reader, id string) (row presenceRow, ok bool, err error) {
	v, err := rd.Get(presenceKey(id))
	if errors.Is(err, kv.ErrNotFound) {
		return presenceRow{}, false, nil
	}
	if err != nil {
		return presenceRow{}, false, fmt.Errorf("read session of %s: %w", id, err)
	}
	return readPresenceValue(id, v)
}

// readPresenceValue decodes the device's stored row v.
func readPresenceValue(id string, v []byte) (row presenceRow, ok bool, err error) {
	if len(v) < 16 {
		return presenceRow{}, false, fmt.Errorf("session of %s: corrupt (%d bytes)", id, len(v))
	}
	return presenceRow{session: Session(binary.BigEndian.Uint64(v)),
		since: time.Unix(0, int64(binary.BigEndian.Uint64(v[8:]))).UTC(), node: string(v[16:])}, true, nil
}

// update runs fn in a store transaction, again after a conflict.
func (p *StorePresence) update(ctx context.Context, fn func(kv.Txn) error) error {
	for attempt := 0; ; attempt++ {
		err := p.store.Update(ctx, fn)
		if errors.Is(err, kv.ErrConflict) && attempt < maxConflictRetries {
			// A pause, as Registry.write takes: run again at once, a
			// session write lands in the next batch of the node's commit
			// queue, beside the writes it lost to, and can lose all its
			// attempts within a burst (seen once as "device session not
			// recorded" in the cluster capacity test under the race
			// detector).
			if err := conflictBackoff(ctx, attempt); err != nil {
				return err
			}
			continue
		}
		return err
	}
}

func (p *StorePresence) shard(id string) *presenceShard {
	return &p.shards[maphash.String(p.seed, id)%uint64(len(p.shards))]
}

// Connect makes a new session of the device, held by this node, the
// current one: its number is above the row's and the clock's (so it also
// stays above a deleted device's old sessions).
func (p *StorePresence) Connect(ctx context.Context, id string, at time.Time) (s Session, prev LiveSession, superseded bool, err error) {
	err = p.update(ctx, func(t kv.Txn) error {
		row, ok, err := readPresence(t, id)
		if err != nil {
			return err
		}
		prev, superseded = LiveSession{}, false
		if ok && row.live() {
			prev, superseded = LiveSession{Session: row.session, Node: row.node, Since: row.since}, true
		}
		s = max(row.session+1, Session(at.UnixNano()))
		return t.Set(presenceKey(id), presenceRow{session: s, since: at, node: p.node}.encode())
	})
	if err != nil {
		return 0, LiveSession{}, false, err
	}
	sh := p.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	// Two connects of one device on this node commit in number order but
	// may get here in either; and another node may have taken the session
	// over already (yield left its mark).
	cur, ok := sh.m[id]
	switch {
	case !ok || cur.Session < s:
		sh.m[id] = LiveSession{Session: s, Node: p.node, Since: at}
	case cur.Node == "":
		return 0, LiveSession{}, false, fmt.Errorf("session %d of %s: %w", s, id, ErrTakenOver)
	}
	return s, prev, superseded, nil
}

// Disconnect ends s if the row still names it. A session this node knows
// was replaced here ends without a store access; one another node took
// over (its row names a newer session) is reported superseded.
func (p *StorePresence) Disconnect(ctx context.Context, id string, s Session) (ended, superseded bool, since time.Time, err error) {
	sh := p.shard(id)
	sh.mu.Lock()
	cur, ok := sh.m[id]
	if ok && cur.Session > s {
		sh.mu.Unlock()
		return false, true, time.Time{}, nil
	}
	if ok && cur.Session == s || ok && cur.Node == "" {
		delete(sh.m, id)
	}
	sh.mu.Unlock()
	err = p.update(ctx, func(t kv.Txn) error {
		row, found, err := readPresence(t, id)
		ended, superseded, since = false, false, time.Time{}
		switch {
		case err != nil:
			return err
		case !found:
			return nil // dropped (deleted, frozen)
		case row.session > s:
			superseded = true
			return nil
		case row.session != s || row.node != p.node || !row.live():
			return nil
		}
		ended, since = true, row.since
		row.node = ""
		return t.Set(presenceKey(id), row.encode())
	})
	if err != nil {
		return false, false, time.Time{}, err
	}
	return ended, superseded, since, nil
}

// Drop forgets the device's session, here and in the store.
func (p *StorePresence) Drop(ctx context.Context, id string) error {
	sh := p.shard(id)
	sh.mu.Lock()
	delete(sh.m, id)
	sh.mu.Unlock()
	return p.update(ctx, func(t kv.Txn) error { return t.Delete(presenceKey(id)) })
}

// Lookup reads the device's current session from the store.
func (p *StorePresence) Lookup(ctx context.Context, id string) (LiveSession, bool, error) {
	var (
		row presenceRow
		ok  bool
	)
	err := p.store.View(ctx, func(rd kv.Reader) error {
		var err error
		row, ok, err = readPresence(rd, id)
		return err
	})
	if err != nil || !ok || !row.live() {
		return LiveSession{}, false, err
	}
	return LiveSession{Session: row.session, Node: row.node, Since: row.since}, true, nil
}

// superseded reports whether this node knows of a newer session of the
// device than s: its own, or another node's that took it over (yield's
// mark).
func (p *StorePresence) superseded(id string, s Session) bool {
	sh := p.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.m[id]
	return ok && cur.Session > s
}

// Online counts the sessions this node holds.
func (p *StorePresence) Online() int {
	n := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		for _, s := range sh.m {
			if s.Node != "" {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// yield forgets this node's session of the device if it is older than
// by, the session another node took it over with, and reports whether
// there was one to close. It leaves a mark (an entry of no node) so that
// a connect of this node that committed before by but has not finished
// yet fails with ErrTakenOver instead of counting as live.
func (p *StorePresence) yield(id string, by Session) bool {
	sh := p.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cur, ok := sh.m[id]
	if ok && cur.Session >= by {
		return false
	}
	sh.m[id] = LiveSession{Session: by}
	return ok && cur.Node != ""
}
