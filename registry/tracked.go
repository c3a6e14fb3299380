package registry

import (
	"bytes"
	"slices"
	"sync"

	"github.com/iotgate/iotgate/registry/kv"
)

// tracked is the Writer a write's fn runs with: it passes reads and
// writes to the engine's transaction and remembers, for once the
// transaction has committed, which cached keys it changed, what to cache
// in their place and which devices got pending commands.
type tracked struct {
	kv.Txn
	r       *Registry
	changed []string    // cacheable keys set or deleted
	marks   []string    // devices given a pending async command
	pending []string    // the pending-command, held-message and desired-hint keys set, and ban keys written (other nodes are told)
	fills   []cacheFill // decoded values to cache once committed
	devices []string    // device records, event seqs and products written, noted in r.writing
	events  []string    // projects the write records events of (their readers are woken)
	outbox  bool        // the write stored events in the cluster's outbox (the relay is woken)

	// First backing of the lists above: a create or an uplink notes a few
	// keys each, and growing them from nil was an allocation apiece.
	changedBuf [4]string
	fillsBuf   [4]cacheFill
	devicesBuf [2]string
	eventsBuf  [1]string
}

// newTracked returns the Writer of one write of r.
func newTracked(r *Registry) *tracked {
	t := &tracked{r: r}
	t.changed, t.fills, t.devices, t.events = t.changedBuf[:0], t.fillsBuf[:0], t.devicesBuf[:0], t.eventsBuf[:0]
	return t
}

// cacheFill is a decoded value (*Device, or the device id of an index
// entry) to cache under key once its write has committed.
type cacheFill struct {
	key   string
	value any
}

// reset readies t for a run of the write's fn (an engine may run it more
// than once).
func (t *tracked) reset(txn kv.Txn) {
	t.release()
	t.Txn = txn
	t.changed, t.marks, t.pending, t.fills = t.changed[:0], t.marks[:0], t.pending[:0], t.fills[:0]
	t.events = t.events[:0]
	t.outbox = false
}

// release forgets the device records this write was writing (once it has
// committed and the cache has forgotten them, or has failed).
func (t *tracked) release() {
	for _, k := range t.devices {
		t.r.writing.done(k)
	}
	t.devices = t.devices[:0]
}

func (t *tracked) Set(k, v []byte) error {
	if err := t.Txn.Set(k, v); err != nil {
		return err
	}
	t.note(k, true)
	return nil
}

func (t *tracked) Delete(k []byte) error {
	if err := t.Txn.Delete(k); err != nil {
		return err
	}
	t.note(k, false)
	return nil
}

func (t *tracked) note(key []byte, set bool) {
	// Most keys a write sets (events, indexes, counters) are neither
	// cached nor pending entries: those are told apart without copying
	// the key.
	family := key
	if i := bytes.IndexByte(key, sep); i >= 0 {
		family = key[:i]
	}
	switch string(family) {
	case famEventOutbox:
		t.outbox = t.outbox || set
		return
	case famEvent:
		if project := eventKeyProject(key); set && (len(t.events) == 0 || t.events[len(t.events)-1] != string(project)) {
			t.events = append(t.events, string(project))
		}
		return
	case famDevice, famNode, famProductNode, famFingerprint, famProduct, famAsyncPending:
	case famDownlinkHeld, famDesired:
		// Other nodes learn of held messages and desired properties, for
		// a device that connects to one of them (a single node marks its
		// own: Router.SendMessage, Registry.UpdateDesired).
		if set && t.r.inval != nil {
			t.pending = append(t.pending, string(key))
		}
		return
	case famBan:
		// Other nodes reload their ban lists (guard.Shared), lifted bans
		// included.
		if t.r.inval != nil {
			t.pending = append(t.pending, string(key))
		}
		return
	default:
		return
	}
	if set && t.r.keys != nil && filtered(family) {
		t.r.keys.add(key)
	}
	k := string(key)
	if cacheable(k) {
		t.changed = append(t.changed, k)
		if family, _, _ := cutPart(k); family == famDevice || family == famProduct {
			t.r.writing.add(k)
			t.devices = append(t.devices, k)
		}
	} else if dev, ok := pendingKeyDevice(k); ok && set {
		t.marks = append(t.marks, dev)
		t.pending = append(t.pending, k)
	}
}

// committed runs once the transaction is durable, before the write is
// acknowledged, in commit order with every other write's (kv.Txn.OnCommit):
// so a caller that saw its write succeed never reads the old value back
// from the cache, and a fill never puts back a value a later commit
// replaced.
func (t *tracked) committed() {
	r := t.r
	if r.cache != nil {
		// What was just written is what the next reads want (the first
		// connect after a create, the reconnect after an activation): a
		// changed key with a fill is replaced in one step, the others
		// dropped.
		for _, k := range t.changed {
			if !hasFill(t.fills, k) {
				r.cache.invalidate(k)
			}
		}
		for _, f := range t.fills {
			r.cache.set(f.key, f.value, slices.Contains(t.changed, f.key))
		}
	}
	// Whoever learns of a new pending command can already find it.
	for _, dev := range t.marks {
		r.pending.mark(dev)
	}
	if r.inval != nil && len(t.changed)+len(t.pending) > 0 {
		r.inval.Publish(append(t.changed, t.pending...))
	}
	if t.outbox {
		r.outboxCommitted()
	}
	if len(t.events) > 0 {
		r.eventSignal.notify(t.events...)
		if r.hints != nil {
			r.hints.HintEvents(t.events)
		}
	}
}

func hasFill(fills []cacheFill, k string) bool {
	for _, f := range fills {
		if f.key == k {
			return true
		}
	}
	return false
}

// cacheAfterCommit has the write w belongs to cache v under k once it has
// committed, and marks k as being written until then (Registry.writing).
// For keys that are not cacheable (never invalidated): each write of k
// must call it, so the cache holds the last committed value.
func cacheAfterCommit(w Writer, k []byte, v any) {
	t, ok := w.(*tracked)
	if !ok {
		return
	}
	ks := string(k)
	t.r.writing.add(ks)
	t.devices = append(t.devices, ks)
	t.fills = append(t.fills, cacheFill{key: ks, value: v})
}

// cacheDevice has the write w belongs to cache d (and the index entries
// given) once it has committed; w's writes must include d's record.
func cacheDevice(w Writer, d *Device, index ...[]byte) {
	t, ok := w.(*tracked)
	if !ok {
		return
	}
	t.fills = append(t.fills, cacheFill{key: string(deviceKey(d.DeviceID)), value: blobOf(d)})
	for _, k := range index {
		t.fills = append(t.fills, cacheFill{key: string(k), value: d.DeviceID})
	}
}

// committedInCache returns the cached value of k if it is k's current
// value as the write rd belongs to sees it: on a single node, when no
// write in flight (this one's, or one that may share its transaction) is
// writing k. The cache then holds what is committed, since every write
// of the store is this node's and caches or invalidates what it wrote
// once committed. On a cluster another node's write may not have reached
// the cache yet, so the caller reads. Only keys whose writes are noted in
// Registry.writing (device records, event seqs, products) qualify.
func committedInCache(rd Reader, k []byte) (any, bool) {
	t, ok := rd.(*tracked)
	if !ok || t.r.inval != nil || t.r.cache == nil || t.r.writing.has(string(k)) {
		return nil, false
	}
	v, _, hit := t.r.cache.get(k)
	return v, hit
}

// deviceExists reports whether device id exists, as the write's
// transaction sees it: from the cache where committedInCache allows,
// else read.
func deviceExists(w Reader, id string) (bool, error) {
	k := deviceKey(id)
	if v, ok := committedInCache(w, k); ok {
		if _, isDevice := v.(deviceBlob); isDevice {
			return true, nil
		}
	}
	_, err := w.Get(k)
	if err == nil {
		return true, nil
	}
	if err == kv.ErrNotFound {
		return false, nil
	}
	return false, err
}

// writingDevices counts, per key, the writes in flight that write it:
// device records, products, and the event seqs kept in the cache.
type writingDevices struct {
	mu sync.Mutex
	m  map[string]int
}

func (w *writingDevices) add(k string) {
	w.mu.Lock()
	if w.m == nil {
		w.m = make(map[string]int)
	}
	w.m[k]++
	w.mu.Unlock()
}

func (w *writingDevices) done(k string) {
	w.mu.Lock()
	if w.m[k] <= 1 {
		delete(w.m, k)
	} else {
		w.m[k]--
	}
	w.mu.Unlock()
}

func (w *writingDevices) has(k string) bool {
	w.mu.Lock()
	_, ok := w.m[k]
	w.mu.Unlock()
	return ok
}
