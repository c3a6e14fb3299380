package registry

import (
	"encoding/binary"
	"math"
	"strings"
	"sync"
)

// deadlineFloor keeps a sweep of an ordered deadline index (prefix,
// big-endian unix nanoseconds, separator, id) from walking the entries
// deleted before it: Badger keeps a deleted key's tombstone until a
// compaction drops it, and every device that connects in time deletes
// its deadline, so a sweep that read the index from its start visited a
// tombstone per device activated since (2.3 ms a sweep after 20,000
// activations, every sweep). The floor is a deadline below which the
// index holds nothing a sweep still needs, and sweeps seek to it.
//
// A sweep raises the floor to the first entry it left in the index; the
// committer lowers it, after each commit, to every deadline the commit
// wrote. A sweep's snapshot can miss a write that commits while it runs,
// so the raise stops at the lowest deadline written since the sweep read
// the floor (read comes before the snapshot): a write the snapshot missed
// committed after read, so it is in that minimum if it has been noted,
// and lowers the floor past the raise when it is noted later.
type deadlineFloor struct {
	prefix []byte

	// sweep makes sweeps of the index take turns, so that each raise
	// pairs with its own read.
	sweep sync.Mutex

	mu sync.Mutex
	// ns is the floor in unix nanoseconds; math.MinInt64 until a sweep
	// has raised it (after start-up the first sweep reads from the start).
	ns int64
	// written is the lowest deadline noted since the last read.
	written int64
}

func newDeadlineFloor(prefix []byte) *deadlineFloor {
	return &deadlineFloor{prefix: prefix, ns: math.MinInt64, written: math.MaxInt64}
}

// read returns the key a sweep seeks to (nil: the start of the index).
// The caller holds f.sweep and takes its snapshot after read.
func (f *deadlineFloor) read() []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.written = math.MaxInt64
	if f.ns == math.MinInt64 {
		return nil
	}
	return binary.BigEndian.AppendUint64(append([]byte(nil), f.prefix...), uint64(f.ns))
}

// raise moves the floor to next, the deadline of the first entry the
// sweep left (math.MaxInt64 if none), or less if a write was noted since
// read. The caller holds f.sweep.
func (f *deadlineFloor) raise(next int64) {
	f.mu.Lock()
	f.ns = min(next, f.written)
	f.mu.Unlock()
}

// deadline returns the deadline of a key of the index.
func (f *deadlineFloor) deadline(k string) (int64, bool) {
	if !strings.HasPrefix(k, string(f.prefix)) || len(k) < len(f.prefix)+8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64([]byte(k[len(f.prefix) : len(f.prefix)+8]))), true
}

// lower notes a committed entry due at ns.
func (f *deadlineFloor) lower(ns int64) {
	f.mu.Lock()
	f.ns = min(f.ns, ns)
	f.written = min(f.written, ns)
	f.mu.Unlock()
}
