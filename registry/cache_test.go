package registry

import (
	"fmt"
	"runtime"
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

// TestCachedDeviceMemory: a cached device is its binary blob, a fraction
// of a decoded Device's memory (BENCHMARKS.md run 28 has the figures).
func TestCachedDeviceMemory(t *testing.T) {
	const n = 20000
	at := time.Date(2026, 12, 7, 8, 9, 10, 0, time.UTC)
	perDevice := func(value func(d *Device) any) float64 {
		c := newCache(1<<22, time.Minute, at)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			d := &Device{ProjectID: "bench", NodeID: fmt.Sprintf("fleet-mqtt-%07d", i), ProductID: "fleet-mqtt",
				Auth: AuthInfo{Type: AuthSecret, Secret: fmt.Sprintf("%032x", i)}, CreateTime: at, ActiveTime: at, StatusTime: at,
				Seq: fmt.Sprintf("%024x", i)}
			d.DeviceID = d.ProductID + "_" + d.NodeID
			c.set(string(deviceKey(d.DeviceID)), value(d), true)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(c)
		return float64(after.HeapAlloc-before.HeapAlloc) / n
	}
	blob := perDevice(func(d *Device) any { return blobOf(d) })
	decoded := perDevice(func(d *Device) any { return d })
	t.Logf("bytes per cached device: blob %.0f, decoded Device %.0f", blob, decoded)
	if blob > decoded/2 {
		t.Fatalf("a cached device takes %.0f bytes, more than half a decoded Device's %.0f", blob, decoded)
	}
}
