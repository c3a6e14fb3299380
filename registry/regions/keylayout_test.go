package regions

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

// Every "act/…/" prefix directory.go builds keys with is declared, and
// the directory's keys round-trip through their family's layout.
func TestStoreLayout(t *testing.T) {
	layout := StoreLayout()
	if err := kv.CheckLayout(layout); err != nil {
		t.Fatal(err)
	}
	prefixes := map[string]bool{}
	for _, f := range layout {
		prefixes[f.KeyPrefix()] = true
	}
	file, err := parser.ParseFile(token.NewFileSet(), "directory.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	ast.Inspect(file, func(node ast.Node) bool {
		if lit, ok := node.(*ast.BasicLit); ok && lit.Kind == token.STRING {
			v, _ := strconv.Unquote(lit.Value)
			if strings.HasPrefix(v, DirectoryPrefix) && v != DirectoryPrefix {
				n++
				if !prefixes[v] {
					t.Errorf("directory.go builds keys under %q, which StoreLayout does not declare", v)
				}
			}
		}
		return true
	})
	if n == 0 {
		t.Fatal("no act/ prefixes found in directory.go")
	}
	kvtest.LayoutRoundTrips(t, layout, [][]byte{entryKey("a1B2c3", "dev-1"), idKey("dev_id"), movingKey("a1B2c3", "dev@1.x")})
}
