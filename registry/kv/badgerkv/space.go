package badgerkv

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"
)

// Badger writes through memory-mapped files (its write-ahead log and new
// tables): a page it touches on a full filesystem cannot be allocated and
// the process dies of SIGBUS, not of an error. So the engine refuses
// writes (kv.ErrFull) while the filesystem holds less than a reserve,
// enough for Badger to finish what it has started (the memtables being
// written and their flush), and it keeps a ballast file beside the
// database: a process that starts on a full disk deletes it first, so
// that Badger can replay and flush its log instead of dying as it opens
// (CockroachDB's emergency ballast is the model). Writes resume by
// themselves once space returns, and the ballast is put back.
type space struct {
	dir         string
	minFree     int64
	ballast     string
	ballastSize int64
	free        func() (int64, error)
	log         *slog.Logger

	mu        sync.Mutex
	checked   time.Time
	full      bool
	lastFree  int64
	noBallast bool // the ballast is missing and must be put back
}

// checkEvery bounds how often the committer asks the filesystem; while
// the store is full it asks at every batch, so writes resume at once.
const checkEvery = 100 * time.Millisecond

func newSpace(dir string, minFree, ballastSize int64, log *slog.Logger) *space {
	s := &space{dir: dir, minFree: minFree, ballast: dir + ".ballast", ballastSize: ballastSize, log: log}
	s.free = func() (int64, error) { return statfsFree(dir) }
	return s
}

func statfsFree(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// beforeOpen deletes the ballast if the filesystem is below the reserve,
// so Badger can open. It reports the free space it saw.
func (s *space) beforeOpen() error {
	free, err := s.free()
	if err != nil {
		return err
	}
	if free >= s.minFree {
		return nil
	}
	if err := os.Remove(s.ballast); err == nil {
		s.log.Warn("storage nearly full at start: deleted the ballast file so the database can open; writes are refused until space is freed",
			"dir", s.dir, "free_bytes", free, "reserve_bytes", s.minFree, "ballast", s.ballast)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete ballast: %w", err)
	}
	s.noBallast = true
	return nil
}

// writable reports whether a batch of writes may run now. Committer only.
func (s *space) writable(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.full && now.Sub(s.checked) < checkEvery {
		return true
	}
	s.checked = now
	free, err := s.free()
	if err != nil {
		s.log.Error("cannot read free space; writes continue", "dir", s.dir, "err", err)
		return true
	}
	s.lastFree = free
	switch {
	case free < s.minFree && !s.full:
		s.full = true
		s.log.Error("storage full: refusing writes until space is freed (reads and sessions go on)",
			"dir", s.dir, "free_bytes", free, "reserve_bytes", s.minFree)
	case free >= s.minFree && s.full:
		s.full = false
		s.log.Info("storage has space again: writes resume", "dir", s.dir, "free_bytes", free)
	}
	if !s.full && (s.noBallast || !s.ballastThere()) && free >= s.minFree+s.ballastSize {
		if err := s.putBallast(); err != nil {
			s.log.Warn("cannot put back the ballast file", "path", s.ballast, "err", err)
		} else {
			s.noBallast = false
		}
	}
	return !s.full
}

func (s *space) ballastThere() bool {
	fi, err := os.Stat(s.ballast)
	return err == nil && fi.Size() >= s.ballastSize
}

// putBallast writes the ballast with real blocks (not a sparse file), so
// deleting it frees that much.
func (s *space) putBallast() error {
	if s.ballastSize <= 0 {
		return nil
	}
	f, err := os.OpenFile(s.ballast, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err = syscall.Fallocate(int(f.Fd()), 0, 0, s.ballastSize); err != nil {
		err = writeZeros(f, s.ballastSize) // filesystems without fallocate
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(s.ballast)
	}
	return err
}

func writeZeros(f *os.File, n int64) error {
	buf := make([]byte, 1<<20)
	for off := int64(0); off < n; off += int64(len(buf)) {
		if _, err := f.WriteAt(buf[:min(int64(len(buf)), n-off)], off); err != nil {
			return err
		}
	}
	return f.Sync()
}
