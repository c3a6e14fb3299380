package badgerkv_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// TestLostMemtableRefusesReadsAndWrites runs the store out of
// descriptors as its memtable fills (the process's soft limit lowered to
// the descriptors open, so Badger cannot open its next memtable). Badger
// then has no memtable: a read would panic inside it and a write would
// exit the process. The store must instead refuse both with
// kv.ErrUnavailable, and reopen afterwards with every acknowledged
// write.
func TestLostMemtableRefusesReadsAndWrites(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "db")
	opts := badgerkv.WithMemTableSize(badgerkv.Options{Dir: dir, MinFreeBytes: -1, MaxTxnBytes: 32 << 10}, 1<<20)
	s, err := badgerkv.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	value := []byte(strings.Repeat("v", 512))
	put := func(i int) error {
		return s.Update(ctx, func(t kv.Txn) error {
			for j := range 16 {
				if err := t.Set(fmt.Appendf(nil, "k%06d-%02d", i, j), value); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err := put(0); err != nil {
		t.Fatal(err)
	}

	// No descriptor left: the soft limit at the ones open, the holes
	// below it filled.
	var saved syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &saved); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	low := saved
	low.Cur = uint64(len(ents)) + 8
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	var filler []*os.File
	restore := func() {
		for _, f := range filler {
			f.Close()
		}
		filler = nil
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved)
	}
	defer restore()
	for {
		f, err := os.Open(os.DevNull)
		if err != nil {
			break
		}
		filler = append(filler, f)
	}

	acked := 1
	var werr error
	for i := 1; i < 4000; i++ {
		if werr = put(i); werr != nil {
			break
		}
		acked++
	}
	restore()
	if werr == nil {
		t.Fatal("no write failed with no descriptor left: the memtable never filled")
	}
	if !errors.Is(werr, kv.ErrUnavailable) {
		t.Fatalf("write as the memtable could not be opened: %v, want kv.ErrUnavailable", werr)
	}

	// Badger has no memtable now: neither a read nor a write may reach it.
	err = s.View(ctx, func(r kv.Reader) error {
		_, err := r.Get([]byte("k000000-00"))
		return err
	})
	if !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("read after the memtable was lost: %v, want kv.ErrUnavailable", err)
	}
	if err := put(99999); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("write after the memtable was lost: %v, want kv.ErrUnavailable", err)
	}
	if _, err := s.Backup(new(strings.Builder)); !errors.Is(err, kv.ErrUnavailable) {
		t.Fatalf("backup after the memtable was lost: %v, want kv.ErrUnavailable", err)
	}
	_ = s.Close()

	// A restart finds every acknowledged write.
	s, err = badgerkv.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.View(ctx, func(r kv.Reader) error {
		for i := range acked {
			if _, err := r.Get(fmt.Appendf(nil, "k%06d-15", i)); err != nil {
				return fmt.Errorf("write %d: %w", i, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("after reopening: %v", err)
	}
	t.Logf("%d writes acknowledged before the memtable could not be opened", acked)
}
