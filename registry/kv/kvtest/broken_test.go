package kvtest_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
	"github.com/iotgate/iotgate/registry/kv/kvtest"
)

// The suite must catch an engine that breaks the contract. Each broken
// engine below wraps a correct one (Badger) and breaks one promise; the
// checks named must fail on it (and pass on the engine it wraps).
func TestSuiteCatchesBrokenEngines(t *testing.T) {
	cases := []struct {
		name   string
		wrap   func(kv.Store) kv.Store
		checks []string
	}{
		{"drops a write", func(s kv.Store) kv.Store { return &dropWrites{Store: s} },
			[]string{"ConcurrentDisjoint", "Paging"}},
		{"keeps the writes of a failed update", func(s kv.Store) kv.Store { return &nonAtomic{Store: s} },
			[]string{"Atomicity"}},
		{"applies an update key by key", func(s kv.Store) kv.Store { return &keyByKey{Store: s} },
			[]string{"SnapshotIsolation", "Atomicity"}},
		{"commits on a stale read", func(s kv.Store) kv.Store { return &staleRead{Store: s} },
			[]string{"UniquenessRace", "CounterRace", "WriteSkew"}},
		{"skips a queue's front for good", func(s kv.Store) kv.Store { return &stuckFloor{Store: s} },
			[]string{"QueueFront"}},
		{"runs OnCommit before committing", func(s kv.Store) kv.Store { return &eagerHooks{Store: s} },
			[]string{"OnCommitOrder"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, name := range c.checks {
				check := kvtest.Checks()[name]
				ok, err := openBadger(t)
				if err != nil {
					t.Fatal(err)
				}
				if err := check(t.Context(), ok, name+"/"); err != nil {
					t.Fatalf("%s fails on the correct engine: %v", name, err)
				}
				broken, err := openBadger(t)
				if err != nil {
					t.Fatal(err)
				}
				err = check(t.Context(), c.wrap(broken), name+"/")
				if err == nil {
					t.Errorf("%s passed on an engine that %s", name, c.name)
				} else {
					t.Logf("%s: %v", name, err)
				}
			}
		})
	}
}

func openBadger(t *testing.T) (kv.Store, error) {
	s, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: [][]byte{[]byte(kvtest.QueuePrefix)}})
	if err == nil {
		t.Cleanup(func() { s.Close() })
	}
	return s, err
}

// setHook is a Txn whose Set is replaced.
type setHook struct {
	kv.Txn
	set func(k, v []byte) error
}

func (s setHook) Set(k, v []byte) error { return s.set(k, v) }

// dropWrites silently loses one Set in seven.
type dropWrites struct {
	kv.Store
	n atomic.Int64
}

func (d *dropWrites) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return d.Store.Update(ctx, func(t kv.Txn) error {
		return fn(setHook{t, func(k, v []byte) error {
			if d.n.Add(1)%7 == 0 {
				return nil
			}
			return t.Set(k, v)
		}})
	})
}

// buffer records an update's writes over a reader.
type buffer struct {
	kv.Reader
	keys   [][]byte
	values [][]byte // nil: delete
	hooks  []func()
}

func (b *buffer) Get(k []byte) ([]byte, error) {
	for i := len(b.keys) - 1; i >= 0; i-- {
		if string(b.keys[i]) == string(k) {
			if b.values[i] == nil {
				return nil, kv.ErrNotFound
			}
			return b.values[i], nil
		}
	}
	return b.Reader.Get(k)
}
func (b *buffer) Set(k, v []byte) error {
	b.keys, b.values = append(b.keys, k), append(b.values, append([]byte{}, v...))
	return nil
}
func (b *buffer) Delete(k []byte) error {
	b.keys, b.values = append(b.keys, k), append(b.values, nil)
	return nil
}
func (b *buffer) OnCommit(f func()) { b.hooks = append(b.hooks, f) }

func (b *buffer) apply(t kv.Txn) error {
	for i, k := range b.keys {
		var err error
		if b.values[i] == nil {
			err = t.Delete(k)
		} else {
			err = t.Set(k, b.values[i])
		}
		if err != nil {
			return err
		}
	}
	for _, h := range b.hooks {
		t.OnCommit(h)
	}
	return nil
}

// nonAtomic keeps the writes of an update whose fn failed.
type nonAtomic struct{ kv.Store }

func (n *nonAtomic) Update(ctx context.Context, fn func(kv.Txn) error) error {
	var b *buffer
	err := n.Store.Update(ctx, func(t kv.Txn) error {
		b = &buffer{Reader: t}
		if err := fn(b); err != nil {
			return err
		}
		return b.apply(t)
	})
	if err != nil && b != nil {
		b.hooks = nil
		_ = n.Store.Update(ctx, b.apply)
	}
	return err
}

// keyByKey commits each write of an update on its own.
type keyByKey struct{ kv.Store }

func (s *keyByKey) Update(ctx context.Context, fn func(kv.Txn) error) error {
	var b *buffer
	var err error
	viewErr := s.Store.View(ctx, func(r kv.Reader) error {
		b = &buffer{Reader: r}
		err = fn(b)
		return nil
	})
	if viewErr != nil {
		return viewErr
	}
	for i, k := range b.keys {
		one := &buffer{keys: [][]byte{k}, values: [][]byte{b.values[i]}}
		if err := s.Store.Update(ctx, one.apply); err != nil {
			return err
		}
	}
	return err
}

// staleRead runs fn on a snapshot, then commits its writes later without
// checking that what it read is still so.
type staleRead struct{ kv.Store }

func (s *staleRead) Update(ctx context.Context, fn func(kv.Txn) error) error {
	var b *buffer
	var err error
	if viewErr := s.Store.View(ctx, func(r kv.Reader) error {
		b = &buffer{Reader: r}
		err = fn(b)
		return nil
	}); viewErr != nil {
		return viewErr
	}
	if err != nil {
		return err
	}
	time.Sleep(200 * time.Microsecond)
	return s.Store.Update(ctx, b.apply)
}

// stuckFloor starts every scan of a queue from its start at the first
// key the previous such scan saw, and never moves that back.
type stuckFloor struct {
	kv.Store
	mu    sync.Mutex
	floor []byte
}

func (s *stuckFloor) View(ctx context.Context, fn func(kv.Reader) error) error {
	return s.Store.View(ctx, func(r kv.Reader) error { return fn(&stuckReader{r, s}) })
}

type stuckReader struct {
	kv.Reader
	s *stuckFloor
}

func (r *stuckReader) Scan(prefix, from []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	if string(prefix) != kvtest.QueuePrefix || from != nil || reverse {
		return r.Reader.Scan(prefix, from, reverse, fn)
	}
	r.s.mu.Lock()
	start := r.s.floor
	r.s.mu.Unlock()
	first := true
	return r.Reader.Scan(prefix, start, false, func(k, v []byte) (bool, error) {
		if first {
			first = false
			r.s.mu.Lock()
			if string(k) > string(r.s.floor) {
				r.s.floor = append([]byte(nil), k...)
			}
			r.s.mu.Unlock()
		}
		return fn(k, v)
	})
}

// eagerHooks runs OnCommit functions as soon as they are registered.
type eagerHooks struct{ kv.Store }

func (e *eagerHooks) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return e.Store.Update(ctx, func(t kv.Txn) error { return fn(eagerTxn{t}) })
}

type eagerTxn struct{ kv.Txn }

func (eagerTxn) OnCommit(f func()) { f() }
