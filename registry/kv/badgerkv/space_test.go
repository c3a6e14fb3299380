package badgerkv_test

import (
	"errors"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// Below the reserve of free space, writes are refused with kv.ErrFull and
// write nothing, reads go on, and writes resume once space returns; the
// ballast is put back when there is room for it, and deleted by a start on
// a full disk.
func TestFullStorageRefusesWritesAndRecovers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	var free atomic.Int64
	free.Store(1 << 30)
	opts := badgerkv.WithFreeSpace(badgerkv.Options{Dir: dir, MinFreeBytes: 100 << 20, BallastBytes: 4096},
		func() (int64, error) { return free.Load(), nil })
	s, err := badgerkv.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	set := func(k string) error {
		return s.Update(ctx, func(t kv.Txn) error { return t.Set([]byte(k), []byte("v")) })
	}
	if err := set("before"); err != nil {
		t.Fatal(err)
	}
	ballast := dir + ".ballast"
	if fi, err := os.Stat(ballast); err != nil || fi.Size() != 4096 {
		t.Fatalf("ballast after the first write: %v %v", fi, err)
	}

	free.Store(50 << 20)
	time.Sleep(150 * time.Millisecond) // past the check interval
	if err := set("during"); !errors.Is(err, kv.ErrFull) {
		t.Fatalf("write on a full store: %v, want kv.ErrFull", err)
	}
	err = s.View(ctx, func(r kv.Reader) error {
		if _, err := r.Get([]byte("before")); err != nil {
			return err
		}
		if _, err := r.Get([]byte("during")); !errors.Is(err, kv.ErrNotFound) {
			return errors.New("a refused write was kept")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("read on a full store: %v", err)
	}

	free.Store(1 << 30)
	if err := set("after"); err != nil {
		t.Fatalf("write once space returned: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A start on a full disk deletes the ballast, opens, serves reads and
	// refuses writes.
	free.Store(10 << 20)
	s, err = badgerkv.Open(opts)
	if err != nil {
		t.Fatalf("open on a full disk: %v", err)
	}
	defer s.Close()
	if _, err := os.Stat(ballast); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ballast still there after a start on a full disk: %v", err)
	}
	if err := s.View(ctx, func(r kv.Reader) error { _, err := r.Get([]byte("after")); return err }); err != nil {
		t.Fatalf("read after a start on a full disk: %v", err)
	}
	if err := set("x"); !errors.Is(err, kv.ErrFull) {
		t.Fatalf("write after a start on a full disk: %v", err)
	}
	free.Store(1 << 30)
	if err := set("x"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(ballast); err != nil || fi.Size() != 4096 {
		t.Fatalf("ballast not put back once space returned: %v %v", fi, err)
	}
}
