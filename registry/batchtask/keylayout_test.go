package batchtask

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
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
	f, err := parser.ParseFile(token.NewFileSet(), "keys.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(f, func(node ast.Node) bool {
		vs, ok := node.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, id := range vs.Names {
			if lit, ok := vs.Values[i].(*ast.BasicLit); ok && strings.HasPrefix(id.Name, "fam") {
				n++
				if v, _ := strconv.Unquote(lit.Value); !declared[v] {
					t.Errorf("%s (%q) is not declared in StoreLayout", id.Name, v)
				}
			}
		}
		return true
	})
	if n == 0 {
		t.Fatal("no fam constants found in keys.go")
	}
	used := map[string]bool{}
	for _, k := range [][]byte{
		taskKey("0a"), listKey("proj", "0a"), activeKey("0a"), itemKey("0a", 0), itemKey("0a", 0x0100),
		targetKey("0a", "dev"), countKey("0a", "w1"), fileKey("proj", "f1"), contentKey("f1"),
	} {
		var fam *kv.Family
		for i := range layout {
			if layout[i].Member(k) {
				fam = &layout[i]
			}
		}
		if fam == nil {
			t.Errorf("key %q: no family", k)
			continue
		}
		used[fam.Name] = true
		parts, err := fam.Split(k)
		if err != nil {
			t.Errorf("key %q: %v", k, err)
		} else if back := fam.AppendKey(nil, parts); !bytes.Equal(back, k) {
			t.Errorf("key %q: rebuilt as %q", k, back)
		}
	}
	for _, f := range layout {
		if !used[f.Name] {
			t.Errorf("family %q: no key of it tested", f.Name)
		}
	}
}
