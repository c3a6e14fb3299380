package badgerkv

import (
	"bytes"
	"fmt"
	"testing"
)

// TestArenaCopies: every copy keeps its bytes while later copies fill
// the arena (they are never moved or overwritten), the first chunk is
// small and chunks double up to arenaChunk, and a value too large for a
// chunk gets its own allocation.
func TestArenaCopies(t *testing.T) {
	var a arena
	if c := a.copy([]byte("x")); cap(a.cur) != arenaFirstChunk || string(c) != "x" {
		t.Fatalf("first chunk of %d bytes, want %d", cap(a.cur), arenaFirstChunk)
	}
	if c := a.copy(nil); c == nil || len(c) != 0 {
		t.Fatalf("empty copy %v: must be empty, not nil (nil stages a delete)", c)
	}
	var copies [][]byte
	var want [][]byte
	caps := map[int]bool{}
	for i := range 2000 {
		b := []byte(fmt.Sprintf("value-%d-%s", i, bytes.Repeat([]byte{byte(i)}, i%300)))
		c := a.copy(b)
		if cap(c) != len(c) {
			t.Fatalf("copy %d: capacity %d beyond its length %d (an append would write into the next copy)", i, cap(c), len(c))
		}
		copies, want = append(copies, c), append(want, b)
		caps[cap(a.cur)] = true
	}
	for i := range copies {
		if !bytes.Equal(copies[i], want[i]) {
			t.Fatalf("copy %d changed: %q", i, copies[i])
		}
	}
	for size := arenaFirstChunk; size <= arenaChunk; size *= 2 {
		if !caps[size] {
			t.Errorf("no chunk of %d bytes among %v", size, caps)
		}
	}
	if len(caps) != 6 {
		t.Errorf("chunk sizes %v, want 1 KiB doubling to 32 KiB", caps)
	}
	big := bytes.Repeat([]byte("b"), arenaChunk/8+1)
	before := cap(a.cur)
	if c := a.copy(big); !bytes.Equal(c, big) || cap(a.cur) != before {
		t.Fatal("a large value went into the arena's chunks")
	}
}
