package batchtask

import (
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/kvtest"
)

// Every fam* constant of keys.go is declared, and keys built by keys.go
// round-trip through their family's layout.
func TestStoreLayout(t *testing.T) {
	layout := StoreLayout()
	if err := kv.CheckLayout(layout); err != nil {
		t.Fatal(err)
	}
	declared := map[string]bool{}
	for _, f := range layout {
		declared[f.Name] = true
	}
	for name, v := range kvtest.FamConstants(t, "keys.go") {
		if !declared[v] {
			t.Errorf("%s (%q) is not declared in StoreLayout", name, v)
		}
	}
	kvtest.LayoutRoundTrips(t, layout, [][]byte{
		taskKey("0a"), listKey("proj", "0a"), activeKey("0a"), itemKey("0a", 0), itemKey("0a", 0x0100),
		targetKey("0a", "dev"), countKey("0a", "w1"), fileKey("proj", "f1"), contentKey("f1"),
	})
}
