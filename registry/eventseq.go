package registry

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry/kv"
)

// A device's event seq lives in its own key (eventSeqKey), read and
// rewritten by every write that records an event of the device, so two
// writes never take the same seq and a refused write takes none.
//
// Reading that key from the store on every uplink would cost a lookup in
// the store's tables; on a single node the registry keeps what was
// committed in its cache instead, and answers from it when the cached
// value must be the key's current one:
//   - every write of the key caches its new value once (and only if) it
//     has committed, in commit order (the commit hook of tracked), so a
//     cached seq is the last committed one;
//   - a write in flight (this one, or one that may share its transaction
//     and be refused yet) may hold a newer, uncommitted seq: while any
//     write is writing the key (Registry.writing), it is read through the
//     transaction, which sees its own writes.
//
// On a cluster other nodes write seqs too, so it is always read.
//
// A device's create event always has seq 1, so a create writes no seq
// key: a device without one has had its create event only (seq 1), and
// the key appears with its second event. The key is deleted with the
// device, so one created again under the same id starts over.

// lastSeq returns dev's last event seq as w's transaction sees it.
func (l *eventLog) lastSeq(w Reader, dev string) (uint64, error) {
	k := eventSeqKey(dev)
	if v, ok := committedInCache(w, k); ok {
		if n, isSeq := v.(uint64); isSeq {
			return n, nil
		}
	}
	v, err := w.Get(k)
	if errors.Is(err, kv.ErrNotFound) {
		return createSeq, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read event seq of %s: %w", dev, err)
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("event seq of %s: corrupt (%d bytes)", dev, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

// createSeq is the seq of a device's create event.
const createSeq = 1

// setSeq stages dev's new last seq.
func (l *eventLog) setSeq(w Writer, dev string, seq uint64) error {
	k := eventSeqKey(dev)
	if seq == createSeq { // the create: no key (see above)
		cacheAfterCommit(w, k, seq)
		return nil
	}
	if err := w.Set(k, binary.BigEndian.AppendUint64(make([]byte, 0, 8), seq)); err != nil {
		return err
	}
	cacheAfterCommit(w, k, seq)
	return nil
}

// deleteSeq stages the deletion of dev's seq (the device is deleted).
func (l *eventLog) deleteSeq(w Writer, dev string) error {
	k := eventSeqKey(dev)
	if err := w.Delete(k); err != nil {
		return err
	}
	cacheAfterCommit(w, k, uint64(createSeq)) // what a read answers now
	return nil
}
