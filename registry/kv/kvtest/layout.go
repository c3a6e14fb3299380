package kvtest

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

// FamConstants reads the fam* string constants of a package's keys file
// (path, relative to the test's package): the key families the package
// builds keys of, by constant name.
func FamConstants(t testing.TB, path string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			for i, n := range vs.Names {
				if !strings.HasPrefix(n.Name, "fam") || i >= len(vs.Values) {
					continue
				}
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					t.Fatalf("%s: %s: not a string literal", path, n.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				out[n.Name] = v
			}
		}
	}
	if len(out) == 0 {
		t.Fatalf("%s: no fam constants found", path)
	}
	return out
}
