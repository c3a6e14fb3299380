package kv

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"
)

func testFamilies() []Family {
	return []Family{
		{Name: "ep", Table: "events", Parts: []Column{TextCol("project"), BinaryCol("pos", 8)}, Value: BytesValue("v")},
		{Name: "x", Table: "expiry", Parts: []Column{BinaryCol("at", 8), TextCol("id")}},
		{Name: "#", Table: "counts", Parts: []Column{TextCol("owner"), OptionalText("shard")}, Value: BytesValue("v")},
		{Name: "#e", Table: "position", Value: BytesValue("v")},
		{Name: "act/d", Prefix: "act/d/", Table: "entries", Parts: []Column{TextCol("pk"), TextCol("dn")}, Value: BytesValue("v")},
	}
}

func TestSplit(t *testing.T) {
	fams := testFamilies()
	ep, x, cnt, pos, act := &fams[0], &fams[1], &fams[2], &fams[3], &fams[4]
	for _, c := range []struct {
		f     *Family
		key   string
		parts []string // nil: refused
	}{
		{ep, "ep\x00p\x00\x00\x00\x00\x00\x00\x00\x00\x01", []string{"p", "\x00\x00\x00\x00\x00\x00\x00\x01"}},
		{ep, "ep\x00p\x00\x00\x00", nil},                             // position too short
		{ep, "ep\x00p\x00\x00\x00\x00\x00\x00\x00\x00\x01\x02", nil}, // too long
		{ep, "ep\x00\xff\x00\x00\x00\x00\x00\x00\x00\x00\x01", nil},  // not UTF-8
		{x, "x\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00dev", []string{"\x00\x00\x00\x00\x00\x00\x00\x00", "dev"}},
		{x, "x\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00de\x00v", nil}, // 0 in the last text part
		{cnt, "#\x00proj", []string{"proj", ""}},
		{cnt, "#\x00proj\x00a", []string{"proj", "a"}},
		{cnt, "#\x00proj\x00", nil}, // present but empty: would read as absent
		{pos, "#e", []string{}},
		{act, "act/d/pk\x00dn", []string{"pk", "dn"}},
		{act, "act/d/pk", nil},
	} {
		got, err := c.f.Split([]byte(c.key))
		if c.parts == nil {
			var le *LayoutError
			if !errors.As(err, &le) || le.Family != c.f.Name {
				t.Errorf("Split(%q) = %q, %v; want a LayoutError naming %q", c.key, got, err, c.f.Name)
			}
			continue
		}
		if err != nil {
			t.Errorf("Split(%q): %v", c.key, err)
			continue
		}
		var gs []string
		for _, p := range got {
			gs = append(gs, string(p))
		}
		if !slices.Equal(gs, c.parts) && !(len(gs) == 0 && len(c.parts) == 0) {
			t.Errorf("Split(%q) = %q, want %q", c.key, gs, c.parts)
		}
		if back := c.f.AppendKey(nil, got); string(back) != c.key {
			t.Errorf("AppendKey(Split(%q)) = %q", c.key, back)
		}
	}
}

func TestCheckLayout(t *testing.T) {
	if err := CheckLayout(testFamilies()); err != nil {
		t.Fatal(err)
	}
	for name, fams := range map[string][]Family{
		"overlap":      {{Name: "a", Table: "a", Parts: []Column{TextCol("x")}}, {Name: "a\x00b", Prefix: "a\x00b", Table: "b", Parts: []Column{TextCol("x")}}},
		"table twice":  {{Name: "a", Table: "t", Parts: []Column{TextCol("x")}}, {Name: "b", Table: "t", Parts: []Column{TextCol("x")}}},
		"no length":    {{Name: "a", Table: "a", Parts: []Column{{Name: "x", Kind: Binary}}}},
		"optional 1st": {{Name: "a", Table: "a", Parts: []Column{OptionalText("x")}}},
	} {
		if CheckLayout(fams) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// compareTuple orders parts as an engine orders the family's rows.
func compareTuple(a, b [][]byte) int {
	for i := range min(len(a), len(b)) {
		if c := bytes.Compare(a[i], b[i]); c != 0 {
			return c
		}
	}
	return len(a) - len(b)
}

// Random keys of each family: their tuple order is their byte order, and
// BoundOf of any byte string describes "key >= bound" as documented.
func TestOrderAndBounds(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte{'a', 'b', 0x7f, 0xc3, 0xa9, 0x01}
	text := func() []byte {
		for {
			b := make([]byte, rng.IntN(4))
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			if bytes.IndexByte(b, 0) < 0 && validText(b) {
				return b
			}
		}
	}
	for _, f := range testFamilies() {
		var keys [][]byte
		for range 300 {
			parts := make([][]byte, len(f.Parts))
			for i, c := range f.Parts {
				if c.Kind == Text {
					parts[i] = text()
				} else {
					parts[i] = make([]byte, c.Len)
					for j := range parts[i] {
						parts[i][j] = []byte{0, 1, 0xff}[rng.IntN(3)]
					}
				}
			}
			k := f.AppendKey(nil, parts)
			if _, err := f.Split(k); err == nil {
				keys = append(keys, k)
			}
		}
		for _, a := range keys {
			pa, _ := f.Split(a)
			for _, b := range keys[:50] {
				pb, _ := f.Split(b)
				if sign(compareTuple(pa, pb)) != sign(bytes.Compare(a, b)) {
					t.Fatalf("%s: tuple order of %q and %q differs from byte order", f.Name, a, b)
				}
			}
		}
		// Bounds: keys, their prefixes and their successors.
		var bounds [][]byte
		for _, k := range keys[:60] {
			for n := len(f.KeyPrefix()); n <= len(k); n++ {
				bounds = append(bounds, k[:n], append(bytes.Clone(k[:n]), 0), append(bytes.Clone(k[:n]), 1))
			}
		}
		for _, bd := range bounds {
			b := f.BoundOf(bd)
			for _, k := range keys {
				p, _ := f.Split(k)
				n := min(len(b.Values), len(p))
				c := compareTuple(p[:n], b.Values)
				ge := bytes.Compare(k, bd) >= 0
				switch {
				case b.Exact && b.Strict && ge != (c > 0), b.Exact && !b.Strict && ge != (c >= 0):
					t.Fatalf("%s: bound %q (%+v): key %q >= bound is %v", f.Name, bd, b, k, ge)
				case !b.Exact && ge && c < 0, !b.Exact && !ge && c > 0:
					t.Fatalf("%s: loose bound %q (%+v) excludes key %q", f.Name, bd, b, k)
				}
			}
		}
	}
}

func validText(b []byte) bool { return string(b) == string([]rune(string(b))) }

func sign(c int) int { return max(-1, min(1, c)) }
