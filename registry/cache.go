package registry

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"
)

// cache keeps decoded device records and index entries in memory, keyed by
// their store key, so the protocols' authentication lookups cost a map
// read instead of a store read, a JSON decode and an AES-GCM open.
//
// Every write of this node invalidates the keys it wrote once it has
// committed, before it is acknowledged (Registry.write); writes of other
// nodes arrive through the Invalidator. A reader fills the cache only if
// no invalidation reached that shard between its store read and its fill
// (a generation check), so a slow reader never installs a stale value.
// An entry older than maxAge is a miss, which bounds what a lost
// invalidation costs; age is kept in seconds of a clock that Run ticks,
// so a hit reads no clock.
type cache struct {
	seed   maphash.Seed
	max    int   // entries per shard
	maxAge int64 // seconds
	now    atomic.Int64
	shards [64]cacheShard
}

type cacheShard struct {
	mu  sync.Mutex
	gen uint64
	m   map[string]cacheEntry
}

type cacheEntry struct {
	v  any   // *Device, *Product or string (device id)
	at int64 // the cache clock when it was filled
}

func newCache(maxEntries int, maxAge time.Duration, now time.Time) *cache {
	c := &cache{seed: maphash.MakeSeed(), max: maxEntries / 64, maxAge: max(int64(maxAge/time.Second), 1)}
	c.now.Store(now.Unix())
	if c.max < 1 {
		c.max = 1
	}
	for i := range c.shards {
		c.shards[i].m = make(map[string]cacheEntry)
	}
	return c
}

// tick advances the cache's clock.
func (c *cache) tick(now time.Time) { c.now.Store(now.Unix()) }

func (c *cache) shard(k []byte) *cacheShard {
	return &c.shards[maphash.Bytes(c.seed, k)%uint64(len(c.shards))]
}

// get returns the cached value and, on a miss, the generation to pass to
// put after reading the store.
func (c *cache) get(k []byte) (any, uint64, bool) {
	sh := c.shard(k)
	sh.mu.Lock()
	e, ok := sh.m[string(k)]
	if ok && c.now.Load()-e.at > c.maxAge {
		delete(sh.m, string(k))
		ok = false
	}
	gen := sh.gen
	sh.mu.Unlock()
	return e.v, gen, ok
}

func (c *cache) put(k []byte, v any, gen uint64) {
	sh := c.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.gen != gen {
		return // a write to this shard raced with our read
	}
	if len(sh.m) >= c.max {
		for old := range sh.m { // evict an arbitrary entry
			delete(sh.m, old)
			break
		}
	}
	sh.m[string(k)] = cacheEntry{v: v, at: c.now.Load()}
}

// set caches v under k unconditionally. Only a write's commit hook calls
// it, for values it has just committed; written says k is cacheable and
// was written, so a read racing the write must not fill it (as
// invalidate).
func (c *cache) set(k string, v any, written bool) {
	sh := c.shard([]byte(k))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if written {
		sh.gen++
	}
	if len(sh.m) >= c.max { // checked first: a lookup in a large map is a cache miss
		if _, ok := sh.m[k]; !ok {
			for old := range sh.m { // evict an arbitrary entry
				delete(sh.m, old)
				break
			}
		}
	}
	sh.m[k] = cacheEntry{v: v, at: c.now.Load()}
}

// cacheable reports whether keys like k are ever cached: device records
// (d), the node, product-node and fingerprint indexes (n, m, f) and
// products (p). The committer invalidates only those: invalidating bumps
// the shard's generation, which refuses every fill racing with it, and
// the status times, counters and messages a storm writes would otherwise
// keep the cache from filling while it is needed most.
func cacheable(k string) bool {
	switch family, _, _ := cutPart(k); family {
	case famDevice, famNode, famProductNode, famFingerprint, famProduct:
		return true
	}
	return false
}

// clear drops every entry: notices of other nodes' writes may have been
// lost.
func (c *cache) clear() {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		sh.gen++
		clear(sh.m)
		sh.mu.Unlock()
	}
}

func (c *cache) invalidate(k string) {
	sh := c.shard([]byte(k))
	sh.mu.Lock()
	sh.gen++
	delete(sh.m, k)
	sh.mu.Unlock()
}
