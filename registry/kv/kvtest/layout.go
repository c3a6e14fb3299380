package kvtest

import (
	"bytes"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
)

// LayoutRoundTrips checks a package's declared key families against keys
// the package really builds: each key belongs to a family, splits into
// its parts and is rebuilt byte for byte, and every family owns one of
// the keys at least.
func LayoutRoundTrips(t testing.TB, layout []kv.Family, keys [][]byte) {
	t.Helper()
	used := map[string]bool{}
	for _, k := range keys {
		var fam *kv.Family
		for i := range layout {
			if layout[i].Member(k) {
				fam = &layout[i]
			}
		}
		if fam == nil {
			t.Errorf("key %q: no family declared", k)
			continue
		}
		used[fam.Name] = true
		parts, err := fam.Split(k)
		if err != nil {
			t.Errorf("key %q: %v", k, err)
			continue
		}
		if back := fam.AppendKey(nil, parts); !bytes.Equal(back, k) {
			t.Errorf("key %q: rebuilt as %q", k, back)
		}
	}
	for _, f := range layout {
		if !used[f.Name] {
			t.Errorf("family %q (%s): no key of it in the round-trip test", f.Name, f.Table)
		}
	}
}
