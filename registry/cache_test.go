package registry

import (
	"testing"
	"time"
)

// TestCacheWriteRefusesRacingFill: a write's commit replaces what it
// wrote in one step (set with written), and a reader that read the store
// before that commit cannot put its older value back.
func TestCacheWriteRefusesRacingFill(t *testing.T) {
	c := newCache(1024, time.Minute, time.Now())
	k := []byte("d\x00dev1")
	if _, _, ok := c.get(k); ok {
		t.Fatal("empty cache hit")
	}
	_, gen, _ := c.get(k) // a reader misses and reads the store...
	c.set(string(k), "new", true)
	c.put(k, "old", gen) // ...and fills after the write committed
	if v, _, ok := c.get(k); !ok || v != "new" {
		t.Fatalf("cache holds %v, %v after a racing fill; want the written value", v, ok)
	}

	// A fill of a key no write changed (an event seq) leaves racing
	// readers of the shard alone.
	_, gen, _ = c.get(k)
	c.set(string(k), "seq", false)
	c.put(k, "read", gen)
	if v, _, _ := c.get(k); v != "read" {
		t.Fatalf("cache holds %v; a set of an unwritten key refused a fill", v)
	}
}

// TestCacheSetEvictsWhenFull: a full shard makes room for a new key but
// not for a key it already holds.
func TestCacheSetEvictsWhenFull(t *testing.T) {
	c := newCache(64, time.Minute, time.Now()) // one entry a shard
	c.set("a", 1, true)
	c.set("a", 2, true)
	sh := c.shard([]byte("a"))
	if len(sh.m) != 1 || sh.m["a"].v != 2 {
		t.Fatalf("shard holds %v", sh.m)
	}
	for i := range 1000 {
		c.set(string(rune('b'+i)), i, true)
	}
	for i := range c.shards {
		if n := len(c.shards[i].m); n > 1 {
			t.Fatalf("shard %d holds %d entries, over its bound of 1", i, n)
		}
	}
}
