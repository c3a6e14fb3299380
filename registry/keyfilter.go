package registry

import (
	"context"
	"hash/maphash"
	"sync"
	"sync/atomic"

	"github.com/iotgate/iotgate/registry/kv"
)

// keyFilter knows, on a single node, every stored key of the families
// whose absence a create checks (device ids, node ids, fingerprints,
// products), so that the check is a map lookup instead of a store read of
// a key that is not there: the dearest read of a log-structured store,
// which visits every memtable and level-0 table it holds.
//
// It may hold keys that are gone (a delete leaves its key: that check
// reads the store) and keys of writes that were refused, but never misses
// one that exists: a write adds its keys as it stages them, before any
// later write can check them (all run on the committer), and the keys
// stored before the node started are loaded in the background; until the
// load has finished the filter answers nothing. Other nodes' writes would
// escape it, so a cluster node has none.
type keyFilter struct {
	seed   maphash.Seed
	ready  atomic.Bool
	shards [64]keyFilterShard
}

type keyFilterShard struct {
	mu sync.Mutex
	m  map[uint64]struct{} // key hashes: a collision only costs a read
}

// filteredFamilies are the families a create checks for absence.
var filteredFamilies = [...]string{famDevice, famNode, famProductNode, famFingerprint, famProduct}

func filtered(family []byte) bool {
	switch string(family) {
	case famDevice, famNode, famProductNode, famFingerprint, famProduct:
		return true
	}
	return false
}

func newKeyFilter() *keyFilter {
	f := &keyFilter{seed: maphash.MakeSeed()}
	for i := range f.shards {
		f.shards[i].m = make(map[uint64]struct{})
	}
	return f
}

func (f *keyFilter) add(k []byte) {
	h := maphash.Bytes(f.seed, k)
	sh := &f.shards[h%uint64(len(f.shards))]
	sh.mu.Lock()
	sh.m[h] = struct{}{}
	sh.mu.Unlock()
}

// absent reports whether k is certainly not stored.
func (f *keyFilter) absent(k []byte) bool {
	if !f.ready.Load() {
		return false
	}
	h := maphash.Bytes(f.seed, k)
	sh := &f.shards[h%uint64(len(f.shards))]
	sh.mu.Lock()
	_, ok := sh.m[h]
	sh.mu.Unlock()
	return !ok
}

// load adds every stored key of the filtered families, then lets the
// filter answer.
func (f *keyFilter) load(ctx context.Context, s kv.Store) error {
	for _, fam := range filteredFamilies {
		err := s.View(ctx, func(rd kv.Reader) error {
			return rd.Scan(prefixKey(fam), nil, false, func(k, _ []byte) (bool, error) {
				f.add(k)
				return ctx.Err() == nil, ctx.Err()
			})
		})
		if err != nil {
			return err
		}
	}
	f.ready.Store(true)
	return nil
}
