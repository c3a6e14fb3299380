package badgerkv_test

import (
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
