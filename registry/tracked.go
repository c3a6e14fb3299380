package registry

import "github.com/iotgate/iotgate/registry/kv"

// tracked is the Writer a write's fn runs with: it passes reads and
// writes to the engine's transaction and remembers, for once the
// transaction has committed, which cached keys it changed, what to cache
// in their place and which devices got pending commands.
type tracked struct {
	kv.Txn
	r       *Registry
	changed []string    // cacheable keys set or deleted
	marks   []string    // devices given a pending async command
	pending []string    // the pending-command keys set
	fills   []cacheFill // decoded values to cache once committed
}

// cacheFill is a decoded value (*Device, or the device id of an index
// entry) to cache under key once its write has committed.
type cacheFill struct {
	key   string
	value any
}

func (t *tracked) reset(txn kv.Txn) {
	t.Txn = txn
	t.changed, t.marks, t.pending, t.fills = t.changed[:0], t.marks[:0], t.pending[:0], t.fills[:0]
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
	k := string(key)
	if cacheable(k) {
		t.changed = append(t.changed, k)
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
		for _, k := range t.changed {
			r.cache.invalidate(k)
		}
		// What was just written is what the next reads want (the first
		// connect after a create, the reconnect after an activation).
		for _, f := range t.fills {
			r.cache.set(f.key, f.value)
		}
	}
	// Whoever learns of a new pending command can already find it.
	for _, dev := range t.marks {
		r.pending.mark(dev)
	}
	if r.inval != nil && len(t.changed)+len(t.pending) > 0 {
		r.inval.Publish(append(t.changed, t.pending...))
	}
}

// cacheDevice has the write w belongs to cache d (and the index entries
// given) once it has committed; w's writes must include d's record.
func cacheDevice(w Writer, d *Device, index ...[]byte) {
	t, ok := w.(*tracked)
	if !ok {
		return
	}
	cp := *d
	cp.Status = "" // as read from the store: fillStatus sets it per read
	t.fills = append(t.fills, cacheFill{key: string(deviceKey(d.DeviceID)), value: &cp})
	for _, k := range index {
		t.fills = append(t.fills, cacheFill{key: string(k), value: d.DeviceID})
	}
}

// deviceExists reports whether device id exists, as the write's
// transaction sees it.
func deviceExists(w Reader, id string) (bool, error) {
	_, err := w.Get(deviceKey(id))
	if err == nil {
		return true, nil
	}
	if err == kv.ErrNotFound {
		return false, nil
	}
	return false, err
}
