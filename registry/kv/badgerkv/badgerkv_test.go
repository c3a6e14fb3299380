package badgerkv_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
	"github.com/iotgate/iotgate/registry/kv/kvtest"
)

func open(dir string) (kv.Store, error) {
	return badgerkv.Open(badgerkv.Options{Dir: dir, Queues: [][]byte{[]byte(kvtest.QueuePrefix)}})
}

func TestConformance(t *testing.T) {
	kvtest.Run(t, kvtest.Opener{Open: open, Durable: true})
}

func TestConformanceInMemory(t *testing.T) {
	kvtest.Run(t, kvtest.Opener{Open: func(string) (kv.Store, error) {
		return badgerkv.Open(badgerkv.Options{InMemory: true, Queues: [][]byte{[]byte(kvtest.QueuePrefix)}})
	}})
}

// A batch holds at most MaxTxnBytes: the large-transaction check passes
// with a cap far below one of its updates (such an update commits alone).
func TestConformanceSmallTransactions(t *testing.T) {
	s, err := badgerkv.Open(badgerkv.Options{InMemory: true, MaxTxnBytes: 1 << 10, MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"LargeTransaction", "ConcurrentDisjoint", "Atomicity", "CounterRace"} {
		if err := kvtest.Checks()[name](t.Context(), s, name+"/"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if st := s.Stats(); st.Commits == 0 || st.Ops < st.Commits {
		t.Errorf("stats %+v", st)
	}
}

// Once a scan of a queue from its start has visited its front, the next
// seeks there, past the entries deleted before it.
func TestQueueScanSeeksPastDeletedFront(t *testing.T) {
	s, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: [][]byte{[]byte("q\x00")}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	err = s.Update(ctx, func(t kv.Txn) error {
		for i := range 100 {
			if err := t.Set([]byte(fmt.Sprintf("q\x00%03d", i)), nil); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(t kv.Txn) error {
		for i := range 90 {
			if err := t.Delete([]byte(fmt.Sprintf("q\x00%03d", i))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	scan := func() string {
		var first string
		if err := s.View(ctx, func(r kv.Reader) error {
			return r.Scan([]byte("q\x00"), nil, false, func(k, _ []byte) (bool, error) {
				first = string(k)
				return false, nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return first
	}
	if got := scan(); got != "q\x00090" {
		t.Fatalf("first live entry %q", got)
	}
	if got := s.QueueFloor([]byte("q\x00")); string(got) != "q\x00090" {
		t.Fatalf("after a scan the queue's floor is %q, want its first live entry", got)
	}
	if err := s.Update(ctx, func(t kv.Txn) error { return t.Set([]byte("q\x00005"), nil) }); err != nil {
		t.Fatal(err)
	}
	if got := s.QueueFloor([]byte("q\x00")); string(got) != "q\x00005" {
		t.Fatalf("a write before the floor left it at %q", got)
	}
	if got := scan(); got != "q\x00005" {
		t.Fatalf("first live entry after a write before the floor: %q", got)
	}
}

// An Update sees its own writes, overwrites and deletes through Get and
// Scan whether it stages a few keys (found by comparing) or many (found
// through an index built past linearKeys), and commits the last of each.
func TestUpdateSeesItsOwnWrites(t *testing.T) {
	for _, n := range []int{3, 32, 33, 100} {
		t.Run(fmt.Sprint(n, " keys"), func(t *testing.T) {
			s, err := badgerkv.Open(badgerkv.Options{InMemory: true})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			ctx := t.Context()
			key := func(i int) []byte { return []byte(fmt.Sprintf("k/%03d", i)) }
			// want: every key's final value ("" for deleted ones).
			want := map[string]string{}
			err = s.Update(ctx, func(w kv.Txn) error {
				for i := range n {
					if err := w.Set(key(i), []byte(fmt.Sprint("v", i))); err != nil {
						return err
					}
				}
				for i := 0; i < n; i += 3 { // overwritten
					if err := w.Set(key(i), []byte(fmt.Sprint("w", i))); err != nil {
						return err
					}
				}
				for i := 1; i < n; i += 3 { // deleted
					if err := w.Delete(key(i)); err != nil {
						return err
					}
				}
				for i := range n {
					switch i % 3 {
					case 0:
						want[string(key(i))] = fmt.Sprint("w", i)
					case 1:
						want[string(key(i))] = ""
					default:
						want[string(key(i))] = fmt.Sprint("v", i)
					}
				}
				return check(w, key, n, want)
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := s.View(ctx, func(rd kv.Reader) error { return check(rd, key, n, want) }); err != nil {
				t.Fatalf("after the commit: %v", err)
			}
		})
	}
}

func check(rd kv.Reader, key func(int) []byte, n int, want map[string]string) error {
	for i := range n {
		v, err := rd.Get(key(i))
		if w := want[string(key(i))]; w == "" {
			if !errors.Is(err, kv.ErrNotFound) {
				return fmt.Errorf("deleted %s: %q %v", key(i), v, err)
			}
		} else if err != nil || string(v) != w {
			return fmt.Errorf("get %s: %q %v, want %q", key(i), v, err, w)
		}
	}
	var got []string
	err := rd.Scan([]byte("k/"), nil, false, func(k, v []byte) (bool, error) {
		if want[string(k)] != string(v) {
			return false, fmt.Errorf("scan %s: %q, want %q", k, v, want[string(k)])
		}
		got = append(got, string(k))
		return true, nil
	})
	if err != nil {
		return err
	}
	live := 0
	for _, v := range want {
		if v != "" {
			live++
		}
	}
	if len(got) != live || !slices.IsSorted(got) {
		return fmt.Errorf("scan saw %d keys %v, want %d in order", len(got), got, live)
	}
	return nil
}
