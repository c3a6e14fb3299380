// Package kv is the storage seam of the registry: an ordered,
// transactional key-value store. Engines (registry/kv/badgerkv today)
// implement it in their own packages; the registry domain and the
// protocol adapters never import an engine. kvtest is the conformance
// suite every engine must pass.
//
// Why a key-value seam and not domain repositories: the registry's
// records, indexes, deadline queues and counters are already laid out as
// ordered keys (registry/keys.go lists every family), and every rule that
// keeps them in agreement (an index entry is written in the transaction
// that writes its record) lives once, in the domain, instead of once per
// engine. A SQL engine maps each key family onto a table of its own,
// described by the families' Layout (layout.go: typed key parts as the
// primary key, whose B-tree gives the ordered scans); its serialisation
// failures are reported as ErrConflict and the domain re-runs the write. Counters that every create rewrites are sharded by
// the domain (see registry/keys.go), so no engine sees one contended key
// per project or product.
package kv

import (
	"context"
	"errors"
)

// ErrNotFound is returned by Reader.Get when the key is absent.
var ErrNotFound = errors.New("kv: key not found")

// ErrConflict is returned by Store.Update when the transaction lost a race
// with a concurrent one and nothing it wrote was kept. The write may be
// retried as it is: it runs again against the new state.
var ErrConflict = errors.New("kv: transaction conflict")

// ErrFull is returned by Store.Update when the engine refuses writes
// because its storage is (nearly) full; nothing was written. Reads go on,
// and writes are accepted again once space returns.
var ErrFull = errors.New("kv: storage full, writes refused until space is freed")

// ErrUnavailable is wrapped by an engine whose storage could not be
// reached (a lost connection, a database shutting down); nothing of the
// Update was written.
var ErrUnavailable = errors.New("kv: storage unavailable")

// ErrOutcomeUnknown is wrapped by an engine that lost its storage while a
// commit was in flight and could not learn whether it happened: the
// Update may or may not have been kept, and its OnCommit functions have
// not run.
var ErrOutcomeUnknown = errors.New("kv: commit outcome unknown")

// ErrClosed is returned by a Store after Close.
var ErrClosed = errors.New("kv: store is closed")

// Store is an ordered, transactional key-value store.
//
// The contract (checked by kvtest):
//   - View runs fn against one consistent snapshot: it never sees part of
//     a concurrent Update.
//   - Update runs fn in one serialisable read-write transaction. If fn
//     returns an error, nothing fn wrote is kept and Update returns that
//     error unchanged. If Update returns nil, every write of fn is durable
//     (it survives a crash of the process and of the machine).
//   - Two Updates that read a key and write it can never both commit on
//     the state they read: one of them sees the other's write, or fails
//     with ErrConflict having written nothing.
//   - Once a write is queued an engine may commit it even if ctx ends, and
//     then reports the outcome, never "failed" for a kept write.
type Store interface {
	View(ctx context.Context, fn func(Reader) error) error
	Update(ctx context.Context, fn func(Txn) error) error
	Close() error
}

// Reader reads a snapshot.
type Reader interface {
	// Get returns a copy of the value stored under key, or ErrNotFound.
	Get(key []byte) ([]byte, error)
	// Scan calls fn for each key with the given prefix, in key order
	// (descending when reverse), starting at from when it is non-nil
	// (inclusive). fn returns false to stop. key and value are only valid
	// during the call.
	Scan(prefix, from []byte, reverse bool, fn func(key, value []byte) (bool, error)) error
}

// Writer is a Reader that can also stage writes; reads see staged writes.
type Writer interface {
	Reader
	Set(key, value []byte) error
	Delete(key []byte) error
}

// Txn is the Writer an Update runs fn with.
type Txn interface {
	Writer
	// OnCommit registers f to run once the transaction is durable, before
	// Update returns. Functions registered by Updates of one Store run in
	// commit order, never two at once, so a caller may use them to keep a
	// cache of committed values in step with the store. They must be quick
	// and must not call the Store.
	OnCommit(f func())
}
