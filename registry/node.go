package registry

import (
	"context"
	"time"
)

// State that belongs to one node. A registry on one node keeps it in
// memory (the Local... implementations, the defaults); a cluster hands
// New implementations that share it between nodes (through the bus and
// the store), and nothing else in the registry changes. A named node
// (Options.Node) keeps presence in the store by default (StorePresence);
// Options.Link, when set, carries requests to the node holding a
// device's session (forward.go).

// Presence is which node holds which device's live session. Sessions are
// numbered (the session's epoch) so that a device that reconnected
// (perhaps to another node) is not marked offline by its old connection's
// late disconnect, and so that only the newest session writes status.
// Only the Registry calls it.
type Presence interface {
	// Connect records a new session of the device, held by this node, and
	// returns it. It supersedes any earlier session of the device; prev is
	// that session and superseded reports whether it was live (the device
	// was online already, here or on another node).
	Connect(ctx context.Context, deviceID string, at time.Time) (s Session, prev LiveSession, superseded bool, err error)
	// Disconnect ends s if it is still the device's current session (and
	// returns when it began); otherwise it reports whether a newer session
	// is current.
	Disconnect(ctx context.Context, deviceID string, s Session) (ended, superseded bool, since time.Time, err error)
	// Drop forgets the device's session (the device was deleted or
	// frozen).
	Drop(ctx context.Context, deviceID string) error
	// Lookup returns the device's current session, if it has one: the
	// authoritative answer (on a cluster, the shared record).
	Lookup(ctx context.Context, deviceID string) (LiveSession, bool, error)
	// Online counts the devices with a live session (on a cluster, the
	// sessions this node holds).
	Online() int
}

// LiveSession is one device's current session.
type LiveSession struct {
	Session Session
	Node    string // the node holding it ("" on a single node)
	Since   time.Time
}

// Invalidator tells the other nodes of a cluster which stored keys a
// committed write changed, so they drop what they cached of them: a
// write anywhere invalidates cached records everywhere. Cached records
// also carry a bounded age (Options.CacheMaxAge), so a lost notice costs
// staleness for at most that long.
type Invalidator interface {
	// Publish announces keys changed by a write that has committed. It is
	// called in commit order, before the write is acknowledged, and must
	// not block on the network.
	Publish(keys []string)
	// Subscribe has fn called with the keys other nodes' writes changed,
	// and with nil when notices may have been lost (the bus was down):
	// the node then drops everything it cached.
	Subscribe(fn func(keys []string))
}

// EventHinter tells the other nodes of a cluster which projects' events
// a committed write recorded, so that their stream readers (forwarding
// workers) read them now rather than at their next poll. A hint carries
// no data and may be lost: a reader that misses one reads at its poll.
type EventHinter interface {
	// HintEvents announces that a write which has committed recorded
	// events of projects. It is called in commit order and must not block:
	// an implementation coalesces what the commits of a burst announce.
	// projects is the caller's to reuse once HintEvents returns.
	HintEvents(projects []string)
	// SubscribeEventHints has fn called with the projects other nodes'
	// hints name, and with nil when hints may have been lost (every
	// project's readers then read).
	SubscribeEventHints(fn func(projects []string))
}

// NodeLink carries a request from this node to another and brings its
// answer back: how the router reaches the node holding a device's
// session. Requests and answers are opaque to the link (the registry
// encodes them).
type NodeLink interface {
	// Call sends req to node and waits for its answer, until ctx ends.
	// It fails with ErrNodeUnreachable when no such node answers.
	Call(ctx context.Context, node string, req []byte) ([]byte, error)
	// Serve has fn answer the requests other nodes send to this one.
	Serve(fn func(ctx context.Context, req []byte) []byte)
}

// IDGenerator makes the 24-hex-digit markers (IoTDA's format) that order
// records by creation and name commands and messages: unique across the
// nodes of a cluster without coordination, increasing within a node.
type IDGenerator interface {
	Next(now time.Time) string
}

// Lease elects one node for work that must run once in a cluster (the
// expiry and lifetime sweeps).
type Lease interface {
	// Hold reports whether this node holds the named lease for the next
	// ttl, taking or renewing it if it can.
	Hold(ctx context.Context, name string, ttl time.Duration) (bool, error)
}

// LocalLease is the single node's Lease: it always holds.
type LocalLease struct{}

// Hold always holds.
func (LocalLease) Hold(context.Context, string, time.Duration) (bool, error) { return true, nil }
