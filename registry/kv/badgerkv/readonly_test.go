package badgerkv_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// A read-only store reads what was written, refuses writes, cannot open
// while a writer holds the directory, and leaves the directory's files
// as they were.
func TestReadOnly(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	w, err := badgerkv.Open(badgerkv.Options{Dir: dir, MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("k"), []byte("v")) }); err != nil {
		t.Fatal(err)
	}
	if _, err := badgerkv.Open(badgerkv.Options{Dir: dir, ReadOnly: true}); err == nil {
		t.Fatal("opened read-only while a writer holds the directory")
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	before := listing(t, dir)

	r, err := badgerkv.Open(badgerkv.Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	err = r.View(ctx, func(rd kv.Reader) error {
		v, err := rd.Get([]byte("k"))
		if err == nil && string(v) != "v" {
			t.Errorf("read %q", v)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("k2"), []byte("v")) }); err == nil {
		t.Error("a read-only store took a write")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if after := listing(t, dir); after != before {
		t.Errorf("the directory changed:\nbefore %s\nafter  %s", before, after)
	}
}

// listing is dir's files with their sizes and modification times.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var s string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		s += fmt.Sprintf("%s %d %s\n", p, fi.Size(), fi.ModTime())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}
