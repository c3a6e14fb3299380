package badgerkv

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/dgraph-io/badger/v4"
	"github.com/iotgate/iotgate/registry/kv"
)

// reader reads a View's snapshot.
type reader struct {
	txn   *badger.Txn
	store *Store
	// seqs are the queues' floor sequences read before the snapshot was
	// taken (nil inside an Update, where floors are not used).
	seqs *[maxFloors]uint64
}

func (r *reader) Get(key []byte) ([]byte, error) { return get(r.txn, key) }

func (r *reader) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	if from != nil || reverse || r.seqs == nil {
		_, err := scan(r.txn, prefix, from, reverse, fn)
		return err
	}
	for i, f := range r.store.floors[:min(len(r.store.floors), maxFloors)] {
		if string(f.prefix) != string(prefix) {
			continue
		}
		start, empty := f.start()
		if empty {
			f.raise(nil, r.seqs[i])
			return nil
		}
		first, err := scan(r.txn, prefix, start, false, fn)
		if err == nil {
			f.raise(first, r.seqs[i])
		}
		return err
	}
	_, err := scan(r.txn, prefix, nil, false, fn)
	return err
}

func get(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, kv.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// scan is Reader.Scan on a Badger transaction; it returns a copy of the
// first key it visited (nil if none).
func scan(txn *badger.Txn, prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) (first []byte, err error) {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.Reverse = reverse
	opts.PrefetchValues = false
	it := txn.NewIterator(opts)
	defer it.Close()
	seek := from
	if seek == nil {
		seek = prefix
		if reverse {
			// In reverse, Seek finds the largest key <= seek: start past
			// every key with the prefix.
			seek = append(append([]byte(nil), prefix...), 0xff, 0xff, 0xff, 0xff)
		}
	}
	for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		if first == nil {
			first = item.KeyCopy(nil)
		}
		var more bool
		err := item.Value(func(v []byte) error {
			var err error
			more, err = fn(item.Key(), v)
			return err
		})
		if err != nil {
			return first, err
		}
		if !more {
			return first, nil
		}
	}
	return first, nil
}

// staged buffers one Update's writes so a failing one leaves the shared
// transaction untouched. Reads see the Update's own writes first.
type staged struct {
	txn    *badger.Txn
	arena  *arena
	writes []write        // in the order first staged
	index  map[string]int // position of each key, once there are many
	size   int            // bytes of keys and values staged
	hooks  []func()
	maxVal int // 0: no limit
}

// arena holds the keys and values a batch stages, in chunks that are never
// moved or rewritten: the map keys of its Updates and the slices handed to
// Badger (which holds them until the commit) point into it, instead of
// costing an allocation and a copy each, three times per key.
// Chunks start small and double up to arenaChunk, so a batch of one
// small write (a status change, a saved registration) does not allocate
// and zero a full chunk.
type arena struct{ cur []byte }

const (
	arenaFirstChunk = 1 << 10
	arenaChunk      = 32 << 10
)

func (a *arena) copy(b []byte) []byte {
	if len(b) == 0 {
		return []byte{} // never nil: nil stages a delete
	}
	if len(b) > cap(a.cur)-len(a.cur) {
		if len(b) > arenaChunk/8 {
			return append([]byte(nil), b...)
		}
		size := min(max(2*cap(a.cur), arenaFirstChunk), arenaChunk)
		for size < len(b) {
			size *= 2
		}
		a.cur = make([]byte, 0, size)
	}
	n := len(a.cur)
	a.cur = append(a.cur, b...)
	return a.cur[n:len(a.cur):len(a.cur)]
}

// str views arena bytes as a string, without a copy: they are never
// written again.
func str(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// write is one staged key (in the arena) and its value (nil: a delete).
type write struct{ k, v []byte }

var _ kv.Txn = (*staged)(nil)

func newStaged(txn *badger.Txn, a *arena, maxValue int) *staged {
	return &staged{txn: txn, arena: a, maxVal: maxValue, writes: make([]write, 0, 16)}
}

// linearKeys: an Update staging at most this many keys (a create stages
// about ten) finds them by comparing, without building a map.
const linearKeys = 32

// find returns k's position among the staged keys.
func (s *staged) find(k []byte) (int, bool) {
	if s.index != nil {
		i, ok := s.index[string(k)]
		return i, ok
	}
	for i, w := range s.writes {
		if string(w.k) == string(k) {
			return i, true
		}
	}
	return 0, false
}

// value returns k's staged value (nil: a delete) and whether k is staged.
func (s *staged) value(k []byte) ([]byte, bool) {
	if i, ok := s.find(k); ok {
		return s.writes[i].v, true
	}
	return nil, false
}

func (s *staged) Get(k []byte) ([]byte, error) {
	if v, ok := s.value(k); ok {
		if v == nil {
			return nil, kv.ErrNotFound
		}
		return append([]byte(nil), v...), nil
	}
	return get(s.txn, k)
}

// Scan sees the batch's committed-so-far state with this Update's own
// writes merged in, in key order.
func (s *staged) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	own := s.ownInRange(prefix, from, reverse)
	i := 0
	// emitOwn yields this Update's staged keys that sort before k (after
	// it, in reverse); k == "" flushes the rest.
	emitOwn := func(k string, last bool) (bool, error) {
		for ; i < len(own); i++ {
			o := own[i]
			if !last && (o == k || (!reverse && o > k) || (reverse && o < k)) {
				break
			}
			if v, _ := s.value([]byte(o)); v != nil {
				if more, err := fn([]byte(o), v); err != nil || !more {
					i = len(own)
					return false, err
				}
			}
		}
		return true, nil
	}
	stopped := false
	_, err := scan(s.txn, prefix, from, reverse, func(k, v []byte) (bool, error) {
		more, err := emitOwn(string(k), false)
		if err != nil || !more {
			stopped = true
			return false, err
		}
		if staged, ok := s.value(k); ok {
			i += boolInt(i < len(own) && own[i] == string(k))
			if staged == nil {
				return true, nil
			}
			v = staged
		}
		more, err = fn(k, v)
		if !more || err != nil {
			stopped = true
		}
		return more, err
	})
	if err != nil || stopped {
		return err
	}
	_, err = emitOwn("", true)
	return err
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// ownInRange returns this Update's staged keys within the scan's range,
// in scan order.
func (s *staged) ownInRange(prefix, from []byte, reverse bool) []string {
	var own []string
	for _, w := range s.writes {
		k := str(w.k)
		if len(k) < len(prefix) || k[:len(prefix)] != string(prefix) {
			continue
		}
		if from != nil && ((!reverse && k < string(from)) || (reverse && k > string(from))) {
			continue
		}
		own = append(own, k)
	}
	slices.Sort(own)
	if reverse {
		slices.Reverse(own)
	}
	return own
}

func (s *staged) Set(k, v []byte) error {
	if s.maxVal > 0 && len(v) > s.maxVal {
		return fmt.Errorf("set %q: %d bytes: %w", k, len(v), ErrValueTooLarge)
	}
	s.put(k, s.arena.copy(v))
	return nil
}

func (s *staged) Delete(k []byte) error {
	s.put(k, nil)
	return nil
}

func (s *staged) OnCommit(f func()) { s.hooks = append(s.hooks, f) }

func (s *staged) put(k, v []byte) {
	s.size += len(k) + len(v)
	if i, ok := s.find(k); ok {
		s.writes[i].v = v
		return
	}
	k = s.arena.copy(k)
	s.writes = append(s.writes, write{k, v})
	switch {
	case s.index != nil:
		s.index[str(k)] = len(s.writes) - 1
	case len(s.writes) > linearKeys:
		s.index = make(map[string]int, 2*len(s.writes))
		for i, w := range s.writes {
			s.index[str(w.k)] = i
		}
	}
}

func (s *staged) apply() error {
	for _, w := range s.writes {
		var err error
		if w.v == nil {
			err = s.txn.Delete(w.k)
		} else {
			err = s.txn.Set(w.k, w.v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
