package batchtask

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"strings"
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
	kvtest.LayoutRoundTrips(t, layout, [][]byte{
		taskKey("0a"), listKey("proj", "0a"), activeKey("0a"), itemKey("0a", 0), itemKey("0a", 0x0100),
		targetKey("0a", "dev"), countKey("0a", "w1"), fileKey("proj", "f1"), contentKey("f1"),
	})
}
