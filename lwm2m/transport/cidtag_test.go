package transport

import (
	"bytes"
	"testing"
)

func TestTaggedCIDGenerator(t *testing.T) {
	for _, node := range []string{"node-1", "node-2", "a", "edge-eu-west-17"} {
		tag := TagOf(node)
		if TagOf(node) != tag {
			t.Fatalf("%s: tag not stable", node)
		}
		gen := TaggedCIDGenerator(tag, 8)
		a, b := gen(), gen()
		if len(a) != 8 || len(b) != 8 {
			t.Fatalf("%s: CIDs of %d and %d bytes, want 8", node, len(a), len(b))
		}
		if bytes.Equal(a, b) {
			t.Fatalf("%s: two CIDs alike: %x", node, a)
		}
		for _, cid := range [][]byte{a, b} {
			if got, ok := cidTag(string(cid)); !ok || got != tag {
				t.Fatalf("%s: CID %x has tag %04x, want %04x", node, cid, uint16(got), uint16(tag))
			}
		}
	}
	if TagOf("node-1") == TagOf("node-2") || TagOf("node-2") == TagOf("node-3") || TagOf("node-1") == TagOf("node-3") {
		t.Fatal("node-1..3 share a tag")
	}
	if _, ok := cidTag("x"); ok {
		t.Fatal("a one-byte CID has a tag")
	}
}
