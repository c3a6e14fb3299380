package registry

import "errors"

// ErrNoKey is returned by Reader.Get when the key is absent.
var ErrNoKey = errors.New("key not found")

// Store is the ordered, transactional key-value storage the registry keeps
// its records and indexes in. Every Update is atomic and durable when it
// returns nil; the registry relies on that to keep indexes and records in
// agreement across crashes.
type Store interface {
	// View runs fn against a consistent snapshot.
	View(fn func(Reader) error) error
	// Update runs fn in one read-write transaction and commits it durably.
	// If fn returns an error nothing it wrote is kept.
	Update(fn func(Writer) error) error
	Close() error
}

// Reader reads a snapshot.
type Reader interface {
	// Get returns a copy of the value stored under key, or ErrNoKey.
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
