package pgkv

import (
	"testing"
	"testing/fstest"
)

func TestPrefixEnd(t *testing.T) {
	for _, c := range []struct{ prefix, want string }{
		{"a/", "a0"},
		{"a\xff", "b"},
		{"a\xff\xff", "b"},
		{"\xff\xff", ""}, // no key sorts after every key with this prefix
		{"", ""},
		{"\x00", "\x01"},
	} {
		got := prefixEnd([]byte(c.prefix))
		if string(got) != c.want || (c.want == "" && got != nil) {
			t.Errorf("prefixEnd(%q) = %q, want %q", c.prefix, got, c.want)
		}
	}
}

func TestScanRange(t *testing.T) {
	for _, c := range []struct {
		name           string
		prefix, from   string
		hasFrom, rev   bool
		lo, hi         string
		open, nonEmpty bool
	}{
		{name: "prefix", prefix: "p/", lo: "p/", hi: "p0", nonEmpty: true},
		{name: "prefix reversed", prefix: "p/", rev: true, lo: "p/", hi: "p0", nonEmpty: true},
		{name: "from inside", prefix: "p/", from: "p/k", hasFrom: true, lo: "p/k", hi: "p0", nonEmpty: true},
		{name: "from inside reversed: key <= from", prefix: "p/", from: "p/k", hasFrom: true, rev: true, lo: "p/", hi: "p/k\x00", nonEmpty: true},
		{name: "from before the prefix", prefix: "p/", from: "a", hasFrom: true, lo: "p/", hi: "p0", nonEmpty: true},
		{name: "from after the prefix", prefix: "p/", from: "q", hasFrom: true, lo: "q", hi: "p0"},
		{name: "from before the prefix reversed", prefix: "p/", from: "a", hasFrom: true, rev: true, lo: "p/", hi: "a\x00"},
		{name: "from after the prefix reversed", prefix: "p/", from: "q", hasFrom: true, rev: true, lo: "p/", hi: "p0", nonEmpty: true},
		{name: "empty prefix", prefix: "", lo: "", open: true, nonEmpty: true},
		{name: "all-0xff prefix reversed from", prefix: "\xff", from: "\xff\x01", hasFrom: true, rev: true, lo: "\xff", hi: "\xff\x01\x00", nonEmpty: true},
	} {
		var from []byte
		if c.hasFrom {
			from = []byte(c.from)
		}
		lo, hi, ok := scanRange([]byte(c.prefix), from, c.rev)
		if ok != c.nonEmpty {
			t.Errorf("%s: non-empty %v, want %v", c.name, ok, c.nonEmpty)
			continue
		}
		if !ok {
			continue
		}
		if string(lo) != c.lo || (hi == nil) != c.open || (!c.open && string(hi) != c.hi) {
			t.Errorf("%s: [%q, %q) open=%v, want [%q, %q) open=%v", c.name, lo, hi, hi == nil, c.lo, c.hi, c.open)
		}
	}
}

func TestNextLimit(t *testing.T) {
	for _, c := range []struct{ limit, bytes, rows, want int }{
		{32, 32 * 100, 32, 64},
		{128, 128 * 100, 128, 256},
		{256, 256 * 100, 256, 256},
		{32, 32 * (1 << 20), 32, 4}, // 1 MiB rows: about 4 MiB a page
		{1, 900 << 10, 1, 2},
		{4, 4 * (8 << 20), 4, 1},
	} {
		if got := nextLimit(c.limit, c.bytes, c.rows); got != c.want {
			t.Errorf("nextLimit(%d, %d, %d) = %d, want %d", c.limit, c.bytes, c.rows, got, c.want)
		}
	}
}

func TestLoadMigrations(t *testing.T) {
	ms, err := loadMigrations(migrations)
	if err != nil || len(ms) == 0 || ms[0].version != 1 {
		t.Fatalf("embedded migrations: %v, %v", ms, err)
	}
	sql := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s)} }
	for _, c := range []struct {
		name  string
		files fstest.MapFS
		ok    bool
	}{
		{"in order", fstest.MapFS{"migrations/0002_b.sql": sql("b"), "migrations/0001_a.sql": sql("a")}, true},
		{"a gap", fstest.MapFS{"migrations/0001_a.sql": sql("a"), "migrations/0003_c.sql": sql("c")}, false},
		{"no number", fstest.MapFS{"migrations/a.sql": sql("a")}, false},
		{"zero", fstest.MapFS{"migrations/0000_a.sql": sql("a")}, false},
		{"a duplicate", fstest.MapFS{"migrations/0001_a.sql": sql("a"), "migrations/0001_b.sql": sql("b")}, false},
	} {
		ms, err := loadMigrations(c.files)
		if (err == nil) != c.ok {
			t.Errorf("%s: %v", c.name, err)
		}
		if c.ok && (ms[0].sql != "a" || ms[1].version != 2) {
			t.Errorf("%s: %+v", c.name, ms)
		}
	}
}
