package badgerkv_test

import (
	"fmt"
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
