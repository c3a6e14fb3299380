package pgkv_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/pgkv"
)

// A scan longer than many pages visits every key once, in order, in both
// directions, from any start; fn may read the same transaction while it
// runs; and a View's pages all read one snapshot, even when a write
// commits between them.
func TestLongScans(t *testing.T) {
	s, err := openDir(t, t.TempDir(), pgkv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testContext(t)
	const n = 1500
	key := func(i int) string { return fmt.Sprintf("long/%05d", i) }
	var all []string
	if err := s.Update(ctx, func(t kv.Txn) error {
		for i := range n {
			all = append(all, key(i))
			if err := t.Set([]byte(key(i)), []byte(key(i))); err != nil {
				return err
			}
		}
		return t.Set([]byte("long0"), nil) // just past the prefix
	}); err != nil {
		t.Fatal(err)
	}
	rev := slices.Clone(all)
	slices.Reverse(rev)
	scan := func(r kv.Reader, from string, reverse bool, stopAfter int) ([]string, error) {
		var got []string
		var f []byte
		if from != "" {
			f = []byte(from)
		}
		err := r.Scan([]byte("long/"), f, reverse, func(k, v []byte) (bool, error) {
			if string(k) != string(v) {
				return false, fmt.Errorf("key %q holds %q", k, v)
			}
			got = append(got, string(k))
			if len(got)%97 == 0 { // a read in the middle of the scan
				if w, err := r.Get(k); err != nil || string(w) != string(k) {
					return false, fmt.Errorf("get inside a scan: %q, %v", w, err)
				}
			}
			return stopAfter == 0 || len(got) < stopAfter, nil
		})
		return got, err
	}
	cases := []struct {
		name      string
		from      string
		reverse   bool
		stopAfter int
		want      []string
	}{
		{"forward", "", false, 0, all},
		{"reverse", "", true, 0, rev},
		{"forward from", key(700), false, 0, all[700:]},
		{"reverse from", key(700), true, 0, rev[n-701:]},
		{"stopped", key(10), false, 300, all[10:310]},
	}
	check := func(r kv.Reader) error {
		for _, c := range cases {
			got, err := scan(r, c.from, c.reverse, c.stopAfter)
			if err != nil {
				return fmt.Errorf("%s: %w", c.name, err)
			}
			if !slices.Equal(got, c.want) {
				return fmt.Errorf("%s: %d keys, want %d", c.name, len(got), len(c.want))
			}
		}
		return nil
	}
	if err := s.View(ctx, func(r kv.Reader) error { return check(r) }); err != nil {
		t.Fatalf("view: %v", err)
	}
	if err := s.Update(ctx, func(t kv.Txn) error { return check(t) }); err != nil {
		t.Fatalf("update: %v", err)
	}
	// A write committed while a View is between pages is not seen by it.
	var got []string
	err = s.View(ctx, func(r kv.Reader) error {
		return r.Scan([]byte("long/"), nil, false, func(k, _ []byte) (bool, error) {
			got = append(got, string(k))
			if len(got) == 40 { // past the first page
				if err := s.Update(ctx, func(t kv.Txn) error {
					if err := t.Delete([]byte(key(1000))); err != nil {
						return err
					}
					return t.Set([]byte(key(1000)+"x"), nil)
				}); err != nil {
					return false, err
				}
			}
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, all) {
		t.Fatalf("a View saw a write committed during its scan: %d keys, want %d", len(got), len(all))
	}
}
