package registry

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/dgraph-io/badger/v4"
)

// BadgerOptions configures the embedded Badger store.
type BadgerOptions struct {
	Dir      string // data directory; ignored when InMemory
	InMemory bool   // for tests: nothing touches the disk
	Logger   *slog.Logger
}

type badgerStore struct{ db *badger.DB }

// OpenBadger opens (creating if needed) a Badger store with synchronous
// writes, so that a returned Update is on disk.
func OpenBadger(o BadgerOptions) (Store, error) {
	opts := badger.DefaultOptions(o.Dir).
		WithSyncWrites(true).
		// The registry serialises its writes through one committer, so
		// Badger's optimistic conflict tracking would be pure overhead.
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithLogger(badgerLogger{o.Logger}).
		WithMetricsEnabled(false)
	if o.InMemory {
		opts = opts.WithDir("").WithValueDir("").WithInMemory(true)
	}
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open badger at %q: %w", o.Dir, err)
	}
	return &badgerStore{db: db}, nil
}

func (s *badgerStore) View(fn func(Reader) error) error {
	return s.db.View(func(txn *badger.Txn) error { return fn(badgerTxn{txn}) })
}

func (s *badgerStore) Update(fn func(Writer) error) error {
	return s.db.Update(func(txn *badger.Txn) error { return fn(badgerTxn{txn}) })
}

func (s *badgerStore) Close() error { return s.db.Close() }

type badgerTxn struct{ txn *badger.Txn }

func (t badgerTxn) Get(key []byte) ([]byte, error) {
	item, err := t.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNoKey
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

func (t badgerTxn) Set(key, value []byte) error { return t.txn.Set(key, value) }
func (t badgerTxn) Delete(key []byte) error     { return t.txn.Delete(key) }

func (t badgerTxn) Scan(prefix, from []byte, reverse bool, fn func(key, value []byte) (bool, error)) error {
	opts := badger.DefaultIteratorOptions
	opts.Prefix = prefix
	opts.Reverse = reverse
	opts.PrefetchValues = false
	it := t.txn.NewIterator(opts)
	defer it.Close()
	seek := from
	if seek == nil {
		seek = prefix
		if reverse {
			// In reverse, Seek finds the largest key <= seek: start past
			// every key with the prefix.
			seek = append(append([]byte(nil), prefix...), 0xff, 0xff, 0xff, 0xff)
		}
	}
	for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		var more bool
		err := item.Value(func(v []byte) error {
			var err error
			more, err = fn(item.Key(), v)
			return err
		})
		if err != nil {
			return err
		}
		if !more {
			return nil
		}
	}
	return nil
}

// badgerLogger routes Badger's chatter to slog; its info lines are noise
// for an operator, so they go to debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) log() *slog.Logger {
	if b.l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return b.l.With("component", "badger")
}
func (b badgerLogger) Errorf(f string, a ...any)   { b.log().Error(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log().Warn(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log().Debug(fmt.Sprintf(f, a...)) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log().Debug(fmt.Sprintf(f, a...)) }
