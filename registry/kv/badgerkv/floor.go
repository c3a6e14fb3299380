package badgerkv

import (
	"sync"
	"sync/atomic"
)

// maxFloors bounds the queues a store tracks (a View carries a fixed-size
// array of their sequences, so it allocates nothing for them).
const maxFloors = 4

// floor keeps a forward scan of a queue (an ordered index whose entries
// are deleted from the front, such as a deadline index) from walking the
// entries deleted before it: Badger keeps a deleted key's tombstone until
// a compaction drops it, so a sweep that read the index from its start
// would visit one tombstone per entry ever removed since. The floor is a
// key below which the queue holds nothing live, and scans of the queue
// from its start seek to it.
//
// A scan raises the floor to the first key it visited; the committer
// lowers it, before each commit, to every key the commit sets in the
// queue (before: a snapshot that holds a key was taken after the floor
// went below it).
// A scan's snapshot can miss a write that commits while it runs, so the
// raise also stops at the lowest key set by any commit since the scan's
// View began, and at any lowering whose commit had not ended then: the
// View reads the settled sequence before taking its snapshot, and the
// floor keeps the last keys it was lowered to, numbered by seq.
type floor struct {
	prefix []byte
	seq    atomic.Uint64 // lowerings so far
	// settled is the last lowering whose commit has ended: a View takes
	// it as its starting sequence, so that a lowering made before the
	// View began but committed after its snapshot was taken still stops
	// the View's raise.
	settled atomic.Uint64

	mu sync.Mutex
	// key is the floor; nil means the queue's start (not known yet), and
	// empty means nothing live was left at the last scan.
	key   []byte
	empty bool
	// recent holds the keys of the last len(recent) lowerings: lowering
	// number n is at recent[n%len(recent)].
	recent [64][]byte
}

func newFloor(prefix []byte) *floor { return &floor{prefix: append([]byte(nil), prefix...)} }

// holds reports whether k belongs to the queue.
func (f *floor) holds(k string) bool {
	return len(k) >= len(f.prefix) && k[:len(f.prefix)] == string(f.prefix)
}

// start returns where a scan from the queue's start seeks (nil: the
// prefix itself), or empty if the queue held nothing live at the last
// scan and nothing was set in it since.
func (f *floor) start() (from []byte, empty bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.key, f.empty
}

// lower notes a key of the queue about to be committed. Committer only.
func (f *floor) lower(k []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.empty || (f.key != nil && string(k) < string(f.key)) {
		f.key = k
	}
	f.empty = false
	n := f.seq.Load() + 1
	f.recent[n%uint64(len(f.recent))] = k
	f.seq.Store(n)
}

// settle notes that the commit of every lowering so far has ended (with
// its commit or its failure). Committer only.
func (f *floor) settle() { f.settled.Store(f.seq.Load()) }

// raise moves the floor to first, the first key a scan begun at sequence
// since visited (nil: none), or lower if a commit since then set a lower
// key. When more lowerings happened since than the floor remembers, it
// stays where it is.
func (f *floor) raise(first []byte, since uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.seq.Load()
	if now-since > uint64(len(f.recent)) {
		return
	}
	target, empty := first, first == nil
	for n := since + 1; n <= now; n++ {
		k := f.recent[n%uint64(len(f.recent))]
		if empty || string(k) < string(target) {
			target, empty = k, false
		}
	}
	f.key, f.empty = target, empty
}

// QueueFloor returns where a scan of the queue with the given prefix from
// its start seeks (nil: its start; for tests and diagnostics).
func (s *Store) QueueFloor(prefix []byte) []byte {
	for _, f := range s.floors {
		if string(f.prefix) == string(prefix) {
			k, _ := f.start()
			return k
		}
	}
	return nil
}
