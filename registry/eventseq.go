package registry

import (
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
)

// A device's event seq lives in its own key (eventSeqKey), read and
// rewritten by every write that records an event of the device, so two
// writes never take the same seq and a refused write takes none.
//
// Reading that key from the store on every uplink would cost a lookup in
// the store's tables; the committer keeps what it committed in the
// registry's cache instead, and answers from it when it can know the
// cached value is the key's current one:
//   - the cache is filled only when a write that set the key has committed
//     (cacheAfterCommit), and every write of the key fills it, so a cached
//     seq is the committed one;
//   - the transaction being built may hold a newer, uncommitted seq, set by
//     an earlier write of the same transaction (which may yet be refused):
//     seqTouched names the devices whose seq a write of the current
//     transaction has set, and for those the key is read through the
//     transaction, which sees its own writes.
//
// The current transaction is told apart from the last by the writer the
// committer hands its writes (one per transaction); seqTxn holds it, so a
// new transaction can never reuse its address while it is remembered.
// Only the committer goroutine calls these methods.

// seqCacheUsable reports whether the committer's writer can tell one
// transaction from the next (it is comparable); otherwise every seq is
// read from the store.
func seqCacheUsable(s *staged) bool {
	return s.cache != nil && s.w != nil && reflect.TypeOf(s.w).Comparable()
}

// lastSeq returns dev's last event seq as w's transaction sees it.
func (l *eventLog) lastSeq(w Reader, dev string) (uint64, error) {
	k := eventSeqKey(dev)
	if s, ok := w.(*staged); ok && seqCacheUsable(s) {
		if s.w != l.seqTxn {
			l.seqTxn = s.w
			clear(l.seqTouched)
		}
		if _, touched := l.seqTouched[dev]; !touched {
			if v, _, hit := s.cache.get(k); hit {
				if n, isSeq := v.(uint64); isSeq {
					return n, nil
				}
			}
		}
	}
	v, err := w.Get(k)
	if errors.Is(err, ErrNoKey) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read event seq of %s: %w", dev, err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("event seq of %s: corrupt (%d bytes)", dev, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// setSeq stages dev's new last seq.
func (l *eventLog) setSeq(w Writer, dev string, seq uint64) error {
	k := eventSeqKey(dev)
	if err := w.Set(k, binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)); err != nil {
		return err
	}
	l.cacheSeq(w, k, dev, seq)
	return nil
}

// deleteSeq stages the deletion of dev's seq (the device is deleted).
func (l *eventLog) deleteSeq(w Writer, dev string) error {
	k := eventSeqKey(dev)
	if err := w.Delete(k); err != nil {
		return err
	}
	l.cacheSeq(w, k, dev, 0)
	return nil
}

// cacheSeq marks dev's seq as set in the current transaction and has the
// committer cache it once (and only if) this write commits.
func (l *eventLog) cacheSeq(w Writer, k []byte, dev string, seq uint64) {
	s, ok := w.(*staged)
	if !ok || !seqCacheUsable(s) {
		return
	}
	if s.w != l.seqTxn {
		l.seqTxn = s.w
		clear(l.seqTouched)
	}
	l.seqTouched[dev] = struct{}{}
	s.cacheAfterCommit(string(k), seq)
}
