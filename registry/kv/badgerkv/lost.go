package badgerkv

import (
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"

	"github.com/iotgate/iotgate/registry/kv"
)

// Badger keeps new writes in a memtable and opens a new one (a file)
// when it fills. If that open fails (no descriptor left, say), Badger
// 4.9 leaves the database with no memtable at all: its next read
// dereferences the missing table and panics, and its next write fails
// an assertion that exits the process. Only reopening the database
// mends that, so the store stops using it: once a commit fails so, every
// later View, Update and Backup returns kv.ErrUnavailable (the API's
// 503, and /healthz reports the store down) until the process restarts.
// The commit that failed wrote nothing and was not acknowledged; a
// restart replays Badger's log as after a crash.
//
// A read that started in the instant between Badger's failure and the
// committer seeing it can still meet the panic: the guard narrows the
// window, the budget of descriptors for connections (fdbudget) is what
// keeps the open from failing in the first place.
type lost struct {
	err atomic.Pointer[error]
	log *slog.Logger
}

// memtableLost reports whether err is Badger's failure to open its next
// memtable. Badger wraps it with its text only (y.Wrapf), so the text is
// all there is to match; TestLostMemtableRefusesReadsAndWrites catches a
// Badger that words it otherwise.
func memtableLost(err error) bool {
	return err != nil && strings.Contains(err.Error(), "cannot create new mem table")
}

// mark records err, a commit's failure, if it lost the memtable.
func (l *lost) mark(err error) {
	if !memtableLost(err) {
		return
	}
	wrapped := fmt.Errorf("badgerkv: the database lost its memtable, restart the process: %w: %w", kv.ErrUnavailable, err)
	if l.err.CompareAndSwap(nil, &wrapped) && l.log != nil {
		l.log.Error("store failed: Badger could not open its next memtable and can neither read nor write any more; "+
			"every request is refused until the process restarts", "err", err)
	}
}

// check returns the recorded failure, or nil.
func (l *lost) check() error {
	if p := l.err.Load(); p != nil {
		return *p
	}
	return nil
}
