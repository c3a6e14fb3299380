package badgerkv_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

func TestBackupRestore(t *testing.T) {
	ctx := context.Background()
	s, err := badgerkv.Open(badgerkv.Options{Dir: t.TempDir(), MinFreeBytes: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := map[string]string{}
	for i := range 500 {
		k, v := fmt.Sprintf("k%04d", i), fmt.Sprintf("v%d", i)
		want[k] = v
		if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte(k), []byte(v)) }); err != nil {
			t.Fatal(err)
		}
	}
	// A deleted key and an overwritten one come back as last written.
	if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Delete([]byte("k0001")) }); err != nil {
		t.Fatal(err)
	}
	delete(want, "k0001")
	if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("k0002"), []byte("new")) }); err != nil {
		t.Fatal(err)
	}
	want["k0002"] = "new"
	var buf bytes.Buffer
	n, err := s.Backup(&buf)
	if err != nil || n != int64(buf.Len()) {
		t.Fatalf("backup: %d bytes, %v (buffer %d)", n, err, buf.Len())
	}
	if err := badgerkv.CheckBackup(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatalf("check of a whole backup: %v", err)
	}

	dir := filepath.Join(t.TempDir(), "db")
	if err := badgerkv.Restore(dir, bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	r, err := badgerkv.Open(badgerkv.Options{Dir: dir, ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	err = r.View(ctx, func(rd kv.Reader) error {
		return rd.Scan(nil, nil, false, func(k, v []byte) (bool, error) { got[string(k)] = string(v); return true, nil })
	})
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("restored %d keys, want %d", len(got), len(want))
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("%s = %q, want %q", k, got[k], v)
		}
	}

	// Into a directory that is not empty: refused, left alone.
	if err := badgerkv.Restore(dir, bytes.NewReader(buf.Bytes())); err == nil {
		t.Fatal("restored over a store")
	}
	// Cut short (even at the stream's own boundaries), changed, or not a
	// backup: refused, and nothing is left behind.
	b := buf.Bytes()
	flipped := bytes.Clone(b)
	flipped[len(flipped)/2] ^= 1
	for name, bad := range map[string][]byte{
		"no trailer":   b[:len(b)-40],
		"half":         b[:len(b)/2],
		"one byte cut": b[:len(b)-1],
		"flipped":      flipped,
		"not a backup": []byte("hello"),
	} {
		d := filepath.Join(t.TempDir(), "db")
		if err := badgerkv.CheckBackup(bytes.NewReader(bad)); !errors.Is(err, badgerkv.ErrBadBackup) {
			t.Errorf("%s: check said %v", name, err)
		}
		if err := badgerkv.Restore(d, bytes.NewReader(bad)); err == nil {
			t.Errorf("%s: restored", name)
		}
		for _, p := range []string{d, d + ".restoring"} {
			if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: %s left behind", name, p)
			}
		}
	}
}
