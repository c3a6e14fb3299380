// Package kvtest is the conformance suite of kv.Store: every storage
// engine runs it in its tests and must pass. Each check is also exported
// on its own and returns an error, so the suite's own tests can show that
// it catches a broken engine.
package kvtest

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"golang.org/x/sync/errgroup"
)

// Opener opens the engine under test on dir (created by the suite, empty
// the first time). Opening dir again after Close must give back every
// acknowledged write; an engine that keeps nothing on disk reports that
// with Durable false.
type Opener struct {
	Open    func(dir string) (kv.Store, error)
	Durable bool
}

// QueuePrefix is the prefix CheckQueueFront uses under Run: an engine
// that treats some prefixes as queues (deletes from the front, such as
// the registry's deadline indexes) lists it among them for the suite.
const QueuePrefix = "QueueFront/q\x00"

// Check is one conformance check over an open store, whose keys under
// the prefix it is given are its own.
type Check func(ctx context.Context, s kv.Store, prefix string) error

// Checks lists the suite, by name.
func Checks() map[string]Check {
	return map[string]Check{
		"GetSetDelete":       CheckGetSetDelete,
		"ReadYourWrites":     CheckReadYourWrites,
		"OrderedScan":        CheckOrderedScan,
		"Paging":             CheckPaging,
		"Atomicity":          CheckAtomicity,
		"UniquenessRace":     CheckUniquenessRace,
		"CounterRace":        CheckCounterRace,
		"WriteSkew":          CheckWriteSkew,
		"SnapshotIsolation":  CheckSnapshotIsolation,
		"OnCommitOrder":      CheckOnCommitOrder,
		"QueueFront":         CheckQueueFront,
		"ExpiryOrder":        CheckExpiryOrder,
		"ValueCopies":        CheckValueCopies,
		"CancelledContext":   CheckCancelledContext,
		"LargeTransaction":   CheckLargeTransaction,
		"ConcurrentDisjoint": CheckConcurrentDisjoint,
	}
}

// Run runs every check against the engine, each on a fresh store, and the
// durability check when the engine is durable.
func Run(t *testing.T, o Opener) {
	names := make([]string, 0, len(Checks()))
	for n := range Checks() {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		check := Checks()[name]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, err := o.Open(t.TempDir())
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			defer s.Close()
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := check(ctx, s, name+"/"); err != nil {
				t.Fatal(err)
			}
		})
	}
	if o.Durable {
		t.Run("Durability", func(t *testing.T) {
			t.Parallel()
			if err := CheckDurability(context.Background(), o.Open, t.TempDir()); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// concurrently runs fn(0), ..., fn(n-1) on n goroutines and returns the
// first error.
func concurrently(n int, fn func(i int) error) error {
	var g errgroup.Group
	for i := range n {
		g.Go(func() error { return fn(i) })
	}
	return g.Wait()
}

// update retries f on kv.ErrConflict, as the registry does.
func update(ctx context.Context, s kv.Store, f func(kv.Txn) error) error {
	for {
		err := s.Update(ctx, f)
		if !errors.Is(err, kv.ErrConflict) {
			return err
		}
	}
}

func set(ctx context.Context, s kv.Store, k, v string) error {
	return update(ctx, s, func(t kv.Txn) error { return t.Set([]byte(k), []byte(v)) })
}

func get(ctx context.Context, s kv.Store, k string) (string, error) {
	var v []byte
	err := s.View(ctx, func(r kv.Reader) error {
		var err error
		v, err = r.Get([]byte(k))
		return err
	})
	return string(v), err
}

// scanAll returns the keys under prefix, in scan order, from from.
func scanAll(ctx context.Context, r kv.Reader, prefix, from string, reverse bool) ([]string, error) {
	var keys []string
	var f []byte
	if from != "" {
		f = []byte(from)
	}
	err := r.Scan([]byte(prefix), f, reverse, func(k, _ []byte) (bool, error) {
		keys = append(keys, string(k))
		return true, nil
	})
	return keys, err
}

func viewScan(ctx context.Context, s kv.Store, prefix, from string, reverse bool) ([]string, error) {
	var keys []string
	err := s.View(ctx, func(r kv.Reader) error {
		var err error
		keys, err = scanAll(ctx, r, prefix, from, reverse)
		return err
	})
	return keys, err
}

// CheckGetSetDelete: a set value reads back; a deleted or never-set key is
// kv.ErrNotFound; an empty value is not absent.
func CheckGetSetDelete(ctx context.Context, s kv.Store, p string) error {
	if _, err := get(ctx, s, p+"missing"); !errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("get of a key never set: got %v, want kv.ErrNotFound", err)
	}
	if err := set(ctx, s, p+"a", "1"); err != nil {
		return fmt.Errorf("set: %w", err)
	}
	if err := set(ctx, s, p+"empty", ""); err != nil {
		return fmt.Errorf("set empty: %w", err)
	}
	if v, err := get(ctx, s, p+"a"); err != nil || v != "1" {
		return fmt.Errorf("get after set: %q, %v; want \"1\"", v, err)
	}
	if v, err := get(ctx, s, p+"empty"); err != nil || v != "" {
		return fmt.Errorf("get of an empty value: %q, %v; want \"\", nil", v, err)
	}
	if err := set(ctx, s, p+"a", "2"); err != nil {
		return fmt.Errorf("overwrite: %w", err)
	}
	if v, err := get(ctx, s, p+"a"); err != nil || v != "2" {
		return fmt.Errorf("get after overwrite: %q, %v; want \"2\"", v, err)
	}
	if err := update(ctx, s, func(t kv.Txn) error { return t.Delete([]byte(p + "a")) }); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if _, err := get(ctx, s, p+"a"); !errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("get after delete: got %v, want kv.ErrNotFound", err)
	}
	return nil
}

// CheckReadYourWrites: inside an Update, Get and Scan see the Update's own
// sets and deletes, merged in key order with what is stored.
func CheckReadYourWrites(ctx context.Context, s kv.Store, p string) error {
	for _, k := range []string{"b", "d", "f"} {
		if err := set(ctx, s, p+k, "stored"); err != nil {
			return err
		}
	}
	return update(ctx, s, func(t kv.Txn) error {
		if err := t.Set([]byte(p+"c"), []byte("own")); err != nil {
			return err
		}
		if err := t.Set([]byte(p+"d"), []byte("own")); err != nil {
			return err
		}
		if err := t.Delete([]byte(p + "f")); err != nil {
			return err
		}
		if err := t.Set([]byte(p+"g"), []byte("own")); err != nil {
			return err
		}
		if v, err := t.Get([]byte(p + "d")); err != nil || string(v) != "own" {
			return fmt.Errorf("get of an overwritten key inside the update: %q, %v", v, err)
		}
		if _, err := t.Get([]byte(p + "f")); !errors.Is(err, kv.ErrNotFound) {
			return fmt.Errorf("get of a key deleted inside the update: %v, want kv.ErrNotFound", err)
		}
		var got []string
		err := t.Scan([]byte(p), nil, false, func(k, v []byte) (bool, error) {
			got = append(got, string(k[len(p):])+"="+string(v))
			return true, nil
		})
		if err != nil {
			return err
		}
		want := []string{"b=stored", "c=own", "d=own", "g=own"}
		if !slices.Equal(got, want) {
			return fmt.Errorf("scan inside the update: %v, want %v", got, want)
		}
		got = got[:0]
		err = t.Scan([]byte(p), []byte(p+"e"), true, func(k, v []byte) (bool, error) {
			got = append(got, string(k[len(p):]))
			return true, nil
		})
		if err != nil {
			return err
		}
		if want := []string{"d", "c", "b"}; !slices.Equal(got, want) {
			return fmt.Errorf("reverse scan from e inside the update: %v, want %v", got, want)
		}
		return nil
	})
}

// CheckOrderedScan: scans visit exactly the keys with the prefix (not a
// sibling prefix), in byte order, reversed on request, from a start key
// inclusive, and stop when fn says so.
func CheckOrderedScan(ctx context.Context, s kv.Store, p string) error {
	keys := []string{p + "x/", p + "x/\x00", p + "x/a", p + "x/a\x00b", p + "x/b", p + "x/\xff"}
	others := []string{p + "x", p + "w/z", p + "x0", p + "y/"}
	err := update(ctx, s, func(t kv.Txn) error {
		for _, k := range append(slices.Clone(keys), others...) {
			if err := t.Set([]byte(k), []byte(k)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	got, err := viewScan(ctx, s, p+"x/", "", false)
	if err != nil {
		return err
	}
	if !slices.Equal(got, keys) {
		return fmt.Errorf("forward scan: %q, want %q", got, keys)
	}
	got, err = viewScan(ctx, s, p+"x/", "", true)
	if err != nil {
		return err
	}
	rev := slices.Clone(keys)
	slices.Reverse(rev)
	if !slices.Equal(got, rev) {
		return fmt.Errorf("reverse scan: %q, want %q", got, rev)
	}
	got, err = viewScan(ctx, s, p+"x/", p+"x/a", false)
	if err != nil {
		return err
	}
	if want := keys[2:]; !slices.Equal(got, want) {
		return fmt.Errorf("forward scan from x/a: %q, want %q", got, want)
	}
	got, err = viewScan(ctx, s, p+"x/", p+"x/a\x00b", true)
	if err != nil {
		return err
	}
	if want := []string{keys[3], keys[2], keys[1], keys[0]}; !slices.Equal(got, want) {
		return fmt.Errorf("reverse scan from x/a\\x00b: %q, want %q", got, want)
	}
	n := 0
	err = s.View(ctx, func(r kv.Reader) error {
		return r.Scan([]byte(p+"x/"), nil, false, func(_, _ []byte) (bool, error) {
			n++
			return n < 2, nil
		})
	})
	if err != nil || n != 2 {
		return fmt.Errorf("scan stopped after the second key: visited %d, %v", n, err)
	}
	return nil
}

// CheckPaging: reading a listing page by page, each page starting after
// the last key of the one before, gives every key once, in order, while
// keys are added after the cursor.
func CheckPaging(ctx context.Context, s kv.Store, p string) error {
	var want []string
	for i := range 95 {
		k := fmt.Sprintf("%sl/%05d", p, i*2)
		want = append(want, k)
		if err := set(ctx, s, k, "v"); err != nil {
			return err
		}
	}
	var got []string
	from := ""
	for page := 0; ; page++ {
		var keys []string
		err := s.View(ctx, func(r kv.Reader) error {
			var f []byte
			if from != "" {
				f = []byte(from)
			}
			return r.Scan([]byte(p+"l/"), f, false, func(k, _ []byte) (bool, error) {
				if string(k) == from {
					return true, nil // the cursor itself was on the last page
				}
				keys = append(keys, string(k))
				return len(keys) < 10, nil
			})
		})
		if err != nil {
			return err
		}
		got = append(got, keys...)
		if len(keys) < 10 {
			break
		}
		from = keys[len(keys)-1]
		if page == 3 { // a key after the cursor appears between pages
			k := fmt.Sprintf("%sl/%05d", p, 999)
			want = append(want, k)
			if err := set(ctx, s, k, "v"); err != nil {
				return err
			}
		}
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("paged listing: %d keys, want %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	return nil
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// CheckAtomicity: an Update whose fn fails keeps none of its writes, even
// when concurrent Updates that succeed commit beside it, and returns fn's
// error unchanged.
func CheckAtomicity(ctx context.Context, s kv.Store, p string) error {
	if err := set(ctx, s, p+"rec", "old"); err != nil {
		return err
	}
	refuse := errors.New("refused by its own check")
	err := concurrently(32, func(i int) error {
		if i%2 == 1 {
			return set(ctx, s, fmt.Sprintf("%sok/%02d", p, i), "x")
		}
		err := update(ctx, s, func(t kv.Txn) error {
			if err := t.Set([]byte(fmt.Sprintf("%sidx/%02d", p, i)), []byte("x")); err != nil {
				return err
			}
			if err := t.Set([]byte(p+"rec"), []byte("new")); err != nil {
				return err
			}
			return refuse
		})
		if !errors.Is(err, refuse) {
			return fmt.Errorf("failed update returned %v, want its own error", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if v, err := get(ctx, s, p+"rec"); err != nil || v != "old" {
		return fmt.Errorf("a failed update changed a record: %q, %v", v, err)
	}
	if keys, err := viewScan(ctx, s, p+"idx/", "", false); err != nil || len(keys) != 0 {
		return fmt.Errorf("failed updates left index entries %q (%v)", keys, err)
	}
	if keys, err := viewScan(ctx, s, p+"ok/", "", false); err != nil || len(keys) != 16 {
		return fmt.Errorf("successful updates beside failed ones: %d kept, want 16 (%v)", len(keys), err)
	}
	return nil
}

// CheckUniquenessRace: of many concurrent Updates that each claim one key
// if it is absent, exactly one succeeds.
func CheckUniquenessRace(ctx context.Context, s kv.Store, p string) error {
	taken := errors.New("taken")
	for round := range 20 {
		k := fmt.Sprintf("%snode/%d", p, round)
		var wins atomic.Int32
		err := concurrently(16, func(i int) error {
			err := update(ctx, s, func(t kv.Txn) error {
				if _, err := t.Get([]byte(k)); err == nil {
					return taken
				} else if !errors.Is(err, kv.ErrNotFound) {
					return err
				}
				return t.Set([]byte(k), []byte(fmt.Sprint(i)))
			})
			if err == nil {
				wins.Add(1)
			} else if errors.Is(err, taken) {
				err = nil
			}
			return err
		})
		if err != nil {
			return err
		}
		if n := wins.Load(); n != 1 {
			return fmt.Errorf("round %d: %d concurrent claims of one key succeeded, want 1", round, n)
		}
	}
	return nil
}

// CheckCounterRace: concurrent read-modify-write increments of one key
// lose none.
func CheckCounterRace(ctx context.Context, s kv.Store, p string) error {
	const workers, each = 8, 25
	k := []byte(p + "count")
	err := concurrently(workers, func(int) error {
		for range each {
			err := update(ctx, s, func(t kv.Txn) error {
				var n uint64
				if v, err := t.Get(k); err == nil {
					n = binary.BigEndian.Uint64(v)
				} else if !errors.Is(err, kv.ErrNotFound) {
					return err
				}
				return t.Set(k, binary.BigEndian.AppendUint64(nil, n+1))
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	v, err := get(ctx, s, string(k))
	if err != nil {
		return err
	}
	if n := binary.BigEndian.Uint64([]byte(v)); n != workers*each {
		return fmt.Errorf("counter after %d increments: %d (lost updates)", workers*each, n)
	}
	return nil
}

// CheckWriteSkew: Updates that read several keys and each write a
// different one of them (a quota checked over a sharded counter: read
// every shard, add to one) serialise: of many concurrent claims allowed
// only while every shard is empty, exactly one succeeds. Snapshot
// isolation without serialisability lets several through.
func CheckWriteSkew(ctx context.Context, s kv.Store, p string) error {
	const shards = 8
	full := errors.New("quota reached")
	for round := range 10 {
		shard := func(i int) []byte { return []byte(fmt.Sprintf("%sq/%02d/%d", p, round, i)) }
		var wins atomic.Int32
		err := concurrently(shards, func(i int) error {
			err := update(ctx, s, func(t kv.Txn) error {
				for j := range shards {
					if _, err := t.Get(shard(j)); err == nil {
						return full
					} else if !errors.Is(err, kv.ErrNotFound) {
						return err
					}
				}
				return t.Set(shard(i), []byte("1"))
			})
			if err == nil {
				wins.Add(1)
			} else if errors.Is(err, full) {
				err = nil
			}
			return err
		})
		if err != nil {
			return err
		}
		if n := wins.Load(); n != 1 {
			return fmt.Errorf("round %d: %d concurrent claims under a quota of one succeeded (write skew)", round, n)
		}
	}
	return nil
}

// CheckSnapshotIsolation: while writers move value between two keys and
// add index entries with their records, readers never see half of an
// Update.
func CheckSnapshotIsolation(ctx context.Context, s kv.Store, p string) error {
	a, b := []byte(p+"a"), []byte(p+"b")
	if err := update(ctx, s, func(t kv.Txn) error {
		if err := t.Set(a, binary.BigEndian.AppendUint64(nil, 1000)); err != nil {
			return err
		}
		return t.Set(b, binary.BigEndian.AppendUint64(nil, 1000))
	}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var failed atomic.Value
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				err := update(ctx, s, func(t kv.Txn) error {
					va, err := t.Get(a)
					if err != nil {
						return err
					}
					vb, err := t.Get(b)
					if err != nil {
						return err
					}
					na, nb := binary.BigEndian.Uint64(va), binary.BigEndian.Uint64(vb)
					if err := t.Set(a, binary.BigEndian.AppendUint64(nil, na-1)); err != nil {
						return err
					}
					if err := t.Set(b, binary.BigEndian.AppendUint64(nil, nb+1)); err != nil {
						return err
					}
					id := fmt.Sprintf("%d-%03d", w, i)
					if err := t.Set([]byte(p+"rec/"+id), []byte(id)); err != nil {
						return err
					}
					return t.Set([]byte(p+"idx/"+id), []byte(id))
				})
				if err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	readErr := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			err := s.View(ctx, func(r kv.Reader) error {
				va, err := r.Get(a)
				if err != nil {
					return err
				}
				vb, err := r.Get(b)
				if err != nil {
					return err
				}
				if sum := binary.BigEndian.Uint64(va) + binary.BigEndian.Uint64(vb); sum != 2000 {
					return fmt.Errorf("a reader saw a+b = %d, want 2000 (half of an update)", sum)
				}
				recs, err := scanAll(ctx, r, p+"rec/", "", false)
				if err != nil {
					return err
				}
				idx, err := scanAll(ctx, r, p+"idx/", "", false)
				if err != nil {
					return err
				}
				if len(recs) != len(idx) {
					return fmt.Errorf("a reader saw %d records and %d index entries", len(recs), len(idx))
				}
				return nil
			})
			if err != nil && ctx.Err() == nil {
				readErr <- err
				return
			}
		}
	}()
	wg.Wait()
	cancel()
	<-done
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	select {
	case err := <-readErr:
		return err
	default:
	}
	return nil
}

// CheckOnCommitOrder: OnCommit functions run after the write is visible,
// before Update returns, one at a time, in commit order; those of a failed
// Update never run.
func CheckOnCommitOrder(ctx context.Context, s kv.Store, p string) error {
	k := []byte(p + "v")
	var mu sync.Mutex
	var last uint64 // the value the hooks saw committed last
	var running atomic.Int32
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				ran := false
				err := update(ctx, s, func(t kv.Txn) error {
					ran = false
					var n uint64
					if v, err := t.Get(k); err == nil {
						n = binary.BigEndian.Uint64(v)
					} else if !errors.Is(err, kv.ErrNotFound) {
						return err
					}
					n++
					t.OnCommit(func() {
						if running.Add(1) != 1 {
							failed.Store(errors.New("two OnCommit functions ran at once"))
						}
						defer running.Add(-1)
						mu.Lock()
						defer mu.Unlock()
						if n != last+1 {
							failed.Store(fmt.Errorf("OnCommit of value %d ran after that of %d", n, last))
						}
						last = n
						ran = true
					})
					return t.Set(k, binary.BigEndian.AppendUint64(nil, n))
				})
				if err != nil {
					failed.Store(err)
					return
				}
				if !ran {
					failed.Store(errors.New("Update returned before its OnCommit function ran"))
				}
			}
		}()
	}
	wg.Wait()
	refuse := errors.New("refused")
	hookRan := false
	err := s.Update(ctx, func(t kv.Txn) error {
		t.OnCommit(func() { hookRan = true })
		return refuse
	})
	if !errors.Is(err, refuse) {
		return fmt.Errorf("failed update: %v", err)
	}
	if hookRan {
		return errors.New("the OnCommit function of a failed Update ran")
	}
	if err, _ := failed.Load().(error); err != nil {
		return err
	}
	return nil
}

// CheckQueueFront: an ordered queue whose front is deleted as it is read,
// while entries are added both after and before the front (a deadline
// sooner than every pending one), always reads back every live entry.
func CheckQueueFront(ctx context.Context, s kv.Store, p string) error {
	prefix := p + "q\x00" // QueuePrefix under Run
	qkey := func(ns uint64, id string) []byte {
		return append(binary.BigEndian.AppendUint64([]byte(prefix), ns), append([]byte{0}, id...)...)
	}
	live := map[string]bool{}
	add := func(ns uint64, id string) error {
		live[string(qkey(ns, id))] = true
		return update(ctx, s, func(t kv.Txn) error { return t.Set(qkey(ns, id), nil) })
	}
	for i := range 50 {
		if err := add(uint64(1000+i*10), fmt.Sprint("a", i)); err != nil {
			return err
		}
	}
	for round := range 30 {
		// Read the front few from the start, as a sweep does, and delete them.
		var front [][]byte
		err := s.View(ctx, func(r kv.Reader) error {
			return r.Scan([]byte(prefix), nil, false, func(k, _ []byte) (bool, error) {
				front = append(front, bytes.Clone(k))
				return len(front) < 3, nil
			})
		})
		if err != nil {
			return err
		}
		if err := update(ctx, s, func(t kv.Txn) error {
			for _, k := range front {
				if err := t.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range front {
			delete(live, string(k))
		}
		// Entries before the front and far after it.
		if err := add(uint64(round), fmt.Sprint("early", round)); err != nil {
			return err
		}
		if err := add(uint64(5000+round), fmt.Sprint("late", round)); err != nil {
			return err
		}
		got, err := viewScan(ctx, s, prefix, "", false)
		if err != nil {
			return err
		}
		want := make([]string, 0, len(live))
		for k := range live {
			want = append(want, k)
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			return fmt.Errorf("round %d: the queue reads %d entries, %d are live", round, len(got), len(want))
		}
	}
	// Emptied, then one entry added back.
	if err := update(ctx, s, func(t kv.Txn) error {
		for k := range live {
			if err := t.Delete([]byte(k)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	clear(live)
	if got, err := viewScan(ctx, s, prefix, "", false); err != nil || len(got) != 0 {
		return fmt.Errorf("emptied queue reads %d entries (%v)", len(got), err)
	}
	if err := add(7, "again"); err != nil {
		return err
	}
	if got, err := viewScan(ctx, s, prefix, "", false); err != nil || len(got) != 1 {
		return fmt.Errorf("queue emptied then given one entry reads %d (%v)", len(got), err)
	}
	return nil
}

// CheckExpiryOrder: keys holding big-endian times scan in time order.
func CheckExpiryOrder(ctx context.Context, s kv.Store, p string) error {
	times := []uint64{1 << 40, 255, 256, 1, 1<<63 - 1, 65535, 65536}
	if err := update(ctx, s, func(t kv.Txn) error {
		for _, ns := range times {
			if err := t.Set(binary.BigEndian.AppendUint64([]byte(p+"x/"), ns), nil); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	keys, err := viewScan(ctx, s, p+"x/", "", false)
	if err != nil {
		return err
	}
	var got []uint64
	for _, k := range keys {
		got = append(got, binary.BigEndian.Uint64([]byte(k[len(p)+2:])))
	}
	want := slices.Clone(times)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("deadline order %v, want %v", got, want)
	}
	return nil
}

// CheckValueCopies: a value returned by Get stays the same after the key
// is overwritten, and changing it changes nothing stored.
func CheckValueCopies(ctx context.Context, s kv.Store, p string) error {
	if err := set(ctx, s, p+"k", "abc"); err != nil {
		return err
	}
	var v []byte
	if err := s.View(ctx, func(r kv.Reader) error {
		var err error
		v, err = r.Get([]byte(p + "k"))
		return err
	}); err != nil {
		return err
	}
	if err := set(ctx, s, p+"k", "xyz"); err != nil {
		return err
	}
	if string(v) != "abc" {
		return fmt.Errorf("a value read before an overwrite changed to %q", v)
	}
	v[0] = 'Q'
	if got, err := get(ctx, s, p+"k"); err != nil || got != "xyz" {
		return fmt.Errorf("after changing a returned value the store holds %q (%v)", got, err)
	}
	return nil
}

// CheckCancelledContext: a cancelled context stops a View or Update before
// it starts, and such an Update writes nothing.
func CheckCancelledContext(ctx context.Context, s kv.Store, p string) error {
	c, cancel := context.WithCancel(ctx)
	cancel()
	err := s.Update(c, func(t kv.Txn) error { return t.Set([]byte(p+"k"), []byte("v")) })
	if err == nil {
		return errors.New("an Update with a cancelled context succeeded")
	}
	if _, err := get(ctx, s, p+"k"); !errors.Is(err, kv.ErrNotFound) {
		return fmt.Errorf("an Update refused for its cancelled context wrote (%v)", err)
	}
	if err := s.View(c, func(kv.Reader) error { return nil }); err == nil {
		return errors.New("a View with a cancelled context succeeded")
	}
	return nil
}

// CheckLargeTransaction: Updates of a few MB (values of 900 KiB, the size
// of the largest message the registry keeps), beside small ones, commit
// whole.
func CheckLargeTransaction(ctx context.Context, s kv.Store, p string) error {
	big := bytes.Repeat([]byte("m"), 900<<10)
	err := concurrently(6, func(i int) error {
		return update(ctx, s, func(t kv.Txn) error {
			for j := range 3 {
				if err := t.Set([]byte(fmt.Sprintf("%sbig/%d/%d", p, i, j)), big); err != nil {
					return err
				}
			}
			return t.Set([]byte(fmt.Sprintf("%ssmall/%d", p, i)), []byte("s"))
		})
	})
	if err != nil {
		return fmt.Errorf("large update: %w", err)
	}
	if keys, err := viewScan(ctx, s, p+"big/", "", false); err != nil || len(keys) != 18 {
		return fmt.Errorf("large updates kept %d of 18 values (%v)", len(keys), err)
	}
	return nil
}

// CheckConcurrentDisjoint: many concurrent Updates of distinct keys all
// commit and read back.
func CheckConcurrentDisjoint(ctx context.Context, s kv.Store, p string) error {
	err := concurrently(16, func(w int) error {
		for i := range 50 {
			if err := set(ctx, s, fmt.Sprintf("%sd/%02d/%03d", p, w, i), "v"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	keys, err := viewScan(ctx, s, p+"d/", "", false)
	if err != nil {
		return err
	}
	if len(keys) != 16*50 {
		return fmt.Errorf("%d of %d acknowledged writes read back", len(keys), 16*50)
	}
	return nil
}

// CheckDurability: every acknowledged write, and no refused one, is there
// after the store is closed and opened again.
func CheckDurability(ctx context.Context, open func(string) (kv.Store, error), dir string) error {
	s, err := open(dir)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var acked sync.Map
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				k := fmt.Sprintf("dur/%d/%03d", w, i)
				err := update(ctx, s, func(t kv.Txn) error {
					if err := t.Set([]byte(k), []byte(k)); err != nil {
						return err
					}
					if i%5 == 0 {
						return errors.New("refused")
					}
					return nil
				})
				if err == nil {
					acked.Store(k, true)
				}
			}
		}()
	}
	wg.Wait()
	if err := s.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	s, err = open(dir)
	if err != nil {
		return fmt.Errorf("reopen: %w", err)
	}
	defer s.Close()
	keys, err := viewScan(ctx, s, "dur/", "", false)
	if err != nil {
		return err
	}
	n := 0
	acked.Range(func(_, _ any) bool { n++; return true })
	for _, k := range keys {
		if _, ok := acked.Load(k); !ok {
			return fmt.Errorf("key %q of a refused write is there after reopening", k)
		}
	}
	if len(keys) != n {
		return fmt.Errorf("%d of %d acknowledged writes are there after reopening", len(keys), n)
	}
	return nil
}
