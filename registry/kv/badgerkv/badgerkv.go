// Package badgerkv is the embedded storage engine of iotgate: kv.Store on
// Badger, for a single node. It is the only package that imports Badger.
//
// Badger is single-writer here: one committer goroutine (groupcommit)
// packs the Updates waiting at that moment into one durable transaction
// and acknowledges each only after that transaction is on disk. Each Update's
// writes are staged apart, so one that fails its own checks stages
// nothing and never spoils its batch; and since every transaction of the
// process is built on that one goroutine, two Updates never race and
// ErrConflict is never returned.
package badgerkv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/groupcommit"
)

// Options configures the engine.
type Options struct {
	Dir string // data directory; ignored when InMemory
	// InMemory is for tests: nothing touches the disk. Values must then be
	// under 1 MiB (Badger keeps larger ones in its value log, which an
	// in-memory store lacks); larger ones are refused with ErrValueTooLarge.
	InMemory bool
	Logger   *slog.Logger
	// MaxBatch bounds how many Updates share one commit. Zero means 256.
	MaxBatch int
	// MaxTxnBytes bounds the keys and values of one commit. Zero means
	// 4 MiB, well under Badger's transaction limit (about 15% of the 64 MB
	// memtable), so large values (1 MB messages) cannot make a whole batch
	// fail.
	MaxTxnBytes int
	// MinFreeBytes is the free space below which writes are refused with
	// kv.ErrFull (see space). Zero means 256 MiB; negative disables the
	// check. Ignored when InMemory.
	MinFreeBytes int64
	// BallastBytes is the size of the ballast file kept beside Dir for a
	// start on a full disk. Zero means 64 MiB; negative keeps none.
	BallastBytes int64
	// Queues are prefixes of ordered indexes whose entries are deleted
	// from the front (deadline queues). A forward scan of one from its
	// start skips the deleted entries' tombstones (see floor).
	Queues [][]byte
	// Observer, when set, is told each write's latency and each
	// transaction's size (the platform's metrics).
	Observer groupcommit.Observer
	// ReadOnly opens the database to read it and change nothing (iotgate
	// check): Badger takes a shared lock, so it fails while a server
	// holds the directory, and Updates fail. MinFreeBytes is then
	// ignored (no ballast is made or removed).
	ReadOnly bool

	freeSpace func() (int64, error) // for tests: replaces statfs
	// memTableSize, for tests, shrinks Badger's memtables so a test
	// fills one quickly (and its value threshold to fit them).
	memTableSize int64
}

// ErrRecoveryNeeded refuses a ReadOnly open of a database whose last
// stop was unclean (a crash, kill -9): its log must be truncated to the
// last whole record, a write only a read-write open makes.
var ErrRecoveryNeeded = errors.New("badgerkv: the database was not closed cleanly and must be opened read-write once to recover its log")

// ErrValueTooLarge refuses a value an in-memory store cannot keep.
var ErrValueTooLarge = errors.New("badgerkv: value too large for an in-memory store")

// inMemoryMaxValue is Badger's largest value threshold: values at or above
// it go to the value log.
const inMemoryMaxValue = 1 << 20

// Store is kv.Store on Badger.
type Store struct {
	db       *badger.DB
	maxValue int // 0: no limit
	maxBatch int
	maxBytes int
	floors   []*floor
	space    *space // nil: no free-space check
	lost     lost   // see lost.go

	q         *groupcommit.Queue
	closeOnce sync.Once
	closeErr  error

	stats  Stats
	statMu sync.Mutex
}

var _ kv.Store = (*Store)(nil)

// Stats counts the committer's durable transactions since the store was
// opened and the Updates decided in them (applied, or refused by their
// own checks): Ops/Commits is how many writes share one sync to disk.
type Stats struct {
	Commits uint64 `json:"commits"`
	Ops     uint64 `json:"ops"`
}

// Open opens (creating if needed) a store with synchronous writes, so that
// a returned Update is on disk.
func Open(o Options) (*Store, error) {
	opts := badger.DefaultOptions(o.Dir).
		WithSyncWrites(true).
		// One committer builds every transaction, so Badger's optimistic
		// conflict tracking would be pure overhead.
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithLogger(newBadgerLogger(o.Logger)).
		WithMetricsEnabled(false)
	var sp *space
	if o.ReadOnly {
		opts = opts.WithReadOnly(true)
	}
	if o.memTableSize > 0 {
		opts = opts.WithMemTableSize(o.memTableSize).WithValueThreshold(o.memTableSize / 16)
	}
	if o.InMemory {
		opts = opts.WithDir("").WithValueDir("").WithInMemory(true)
	} else if o.MinFreeBytes >= 0 && !o.ReadOnly {
		minFree, ballast := o.MinFreeBytes, o.BallastBytes
		if minFree == 0 {
			minFree = 256 << 20
		}
		if ballast == 0 {
			ballast = 64 << 20
		}
		log := o.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		if err := os.MkdirAll(o.Dir, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", o.Dir, err)
		}
		sp = newSpace(o.Dir, minFree, max(ballast, 0), log)
		if o.freeSpace != nil {
			sp.free = o.freeSpace
		}
		if err := sp.beforeOpen(); err != nil {
			return nil, err
		}
	}
	db, err := badger.Open(opts)
	// Badger wraps this one with %+v (y.Wrap), not %w: only its text
	// survives.
	if o.ReadOnly && err != nil && strings.Contains(err.Error(), badger.ErrTruncateNeeded.Error()) {
		return nil, fmt.Errorf("open badger at %q: %w", o.Dir, ErrRecoveryNeeded)
	}
	if err != nil {
		return nil, fmt.Errorf("open badger at %q: %w", o.Dir, err)
	}
	s := &Store{
		db:       db,
		lost:     lost{log: o.Logger},
		space:    sp,
		maxBatch: o.MaxBatch,
		maxBytes: o.MaxTxnBytes,
	}
	if s.maxBatch <= 0 {
		s.maxBatch = 256
	}
	s.q = groupcommit.New(s.maxBatch, o.Observer)
	if s.maxBytes <= 0 {
		s.maxBytes = 4 << 20
	}
	if o.InMemory {
		s.maxValue = inMemoryMaxValue - 1
	}
	for _, p := range o.Queues {
		s.floors = append(s.floors, newFloor(p))
	}
	go s.q.Run(s.commit)
	return s, nil
}

// Stats reports the group commit so far.
func (s *Store) Stats() Stats {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	return s.stats
}

// Close stops the committer after the writes already queued and closes
// the database.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.q.Stop()
		s.closeErr = s.db.Close()
	})
	return s.closeErr
}

// View runs fn against a snapshot.
func (s *Store) View(ctx context.Context, fn func(kv.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.lost.check(); err != nil {
		return err
	}
	var seqs [maxFloors]uint64
	// Read before the snapshot is taken (see floor).
	for i, f := range s.floors[:min(len(s.floors), maxFloors)] {
		seqs[i] = f.settled.Load()
	}
	err := s.db.View(func(txn *badger.Txn) error {
		return fn(&reader{txn: txn, store: s, seqs: &seqs})
	})
	if errors.Is(err, badger.ErrDBClosed) {
		return kv.ErrClosed
	}
	return err
}

// Update queues fn for the committer and waits for its outcome.
func (s *Store) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return s.q.Submit(ctx, fn)
}

// commit runs a prefix of batch in one durable transaction and answers
// those ops; it returns how many it took. It stops before an op whose
// writes would push the transaction past maxBytes (that op runs again,
// against the new state, in the next transaction).
func (s *Store) commit(batch []*groupcommit.Op) int {
	if err := s.lost.check(); err != nil {
		for _, o := range batch {
			o.Answer(err)
		}
		return len(batch)
	}
	if s.space != nil && !s.space.writable(time.Now()) {
		for _, o := range batch {
			o.Answer(kv.ErrFull)
		}
		return len(batch)
	}
	results := make([]error, len(batch))
	var hooks []func()
	lowest := make([][]byte, len(s.floors)) // the lowest key each queue was given
	taken := 0
	var a arena
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	err := func() error {
		size := 0
		for i, o := range batch {
			st := newStaged(txn, &a, s.maxValue)
			err := o.Fn(st)
			if err == nil && taken > 0 && size+st.size > s.maxBytes {
				break
			}
			taken++
			if err != nil {
				results[i] = err
				continue
			}
			if err := st.apply(); err != nil {
				return err
			}
			size += st.size
			hooks = append(hooks, st.hooks...)
			for _, w := range st.writes {
				k := str(w.k)
				if w.v == nil {
					continue // deletes never lower a floor
				}
				for j, f := range s.floors {
					if f.holds(k) && (lowest[j] == nil || k < string(lowest[j])) {
						lowest[j] = []byte(k)
					}
				}
			}
		}
		// Lower the queues' floors before the commit (see floor), and
		// count the lowerings settled once it has ended.
		for j, k := range lowest {
			if k != nil {
				s.floors[j].lower(k)
				defer s.floors[j].settle()
			}
		}
		return txn.Commit()
	}()
	if taken == 0 { // the store failed before any op ran
		taken = len(batch)
	}
	s.lost.mark(err)
	if err == nil {
		for _, h := range hooks {
			h()
		}
		s.statMu.Lock()
		s.stats.Commits++
		s.stats.Ops += uint64(taken)
		s.statMu.Unlock()
	}
	for i, o := range batch[:taken] {
		switch {
		case errors.Is(err, badger.ErrDBClosed):
			o.Answer(kv.ErrClosed)
		case memtableLost(err):
			o.Answer(s.lost.check())
		case err != nil:
			o.Answer(fmt.Errorf("badger commit: %w", err))
		default:
			o.Answer(results[i])
		}
	}
	return taken
}

// badgerLogger routes Badger's chatter to slog; its info lines are noise
// for an operator, so they go to debug. Badger logs several debug lines
// on every commit, so a line is formatted only when its level is on.
type badgerLogger struct{ l *slog.Logger }

func newBadgerLogger(l *slog.Logger) badgerLogger {
	if l == nil {
		return badgerLogger{slog.New(slog.DiscardHandler)}
	}
	return badgerLogger{l.With("component", "badger")}
}

func (b badgerLogger) logf(level slog.Level, f string, a []any) {
	if ctx := context.Background(); b.l.Enabled(ctx, level) {
		b.l.Log(ctx, level, fmt.Sprintf(f, a...))
	}
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.logf(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.logf(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.logf(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.logf(slog.LevelDebug, f, a) }

// Size is the bytes the database takes on disk: its LSM tree and its
// value log, as Badger last measured them (it refreshes the figures
// every minute).
func (s *Store) Size() int64 {
	lsm, vlog := s.db.Size()
	return lsm + vlog
}

// Queued reports how many Updates wait for the committer.
func (s *Store) Queued() int { return s.q.Queued() }
