package pgkv_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/kvtest"
	"github.com/iotgate/iotgate/registry/kv/pgkv"
)

// openDir opens a store on the database that belongs to dir.
func openDir(t testing.TB, dir string, o pgkv.Options) (*pgkv.Store, error) {
	srv := needServer(t)
	ctx := testContext(t)
	url, err := srv.Database(ctx, dir)
	if err != nil {
		return nil, err
	}
	o.URL = url
	return pgkv.Open(ctx, o)
}

func TestConformance(t *testing.T) {
	needServer(t)
	kvtest.Run(t, kvtest.Opener{Durable: true, Open: func(dir string) (kv.Store, error) {
		return openDir(t, dir, pgkv.Options{})
	}})
}

// Small batches and pool: the checks still pass when Updates queue behind
// a batch and Views wait for a connection.
func TestConformanceSmallBatches(t *testing.T) {
	needServer(t)
	s, err := openDir(t, t.TempDir(), pgkv.Options{MaxBatch: 2, MaxConns: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, name := range []string{"ReadYourWrites", "Atomicity", "UniquenessRace", "CounterRace", "SnapshotIsolation", "OnCommitOrder"} {
		if err := kvtest.Checks()[name](testContext(t), s, name+"/"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if st := s.Stats(); st.Commits == 0 || st.Ops < st.Commits || st.Ops > 2*st.Commits {
		t.Errorf("stats %+v: want batches of 1 or 2", st)
	}
}

// A batch holds at most MaxTxnBytes: with a cap far below one of the
// large-transaction check's Updates, each commits alone, and the checks
// still pass.
func TestConformanceSmallTransactions(t *testing.T) {
	needServer(t)
	s, err := openDir(t, t.TempDir(), pgkv.Options{MaxTxnBytes: 1 << 10, MaxBatch: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := kvtest.CheckLargeTransaction(testContext(t), s, "LargeTransaction/"); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Commits != st.Ops {
		t.Fatalf("stats %+v: an Update above MaxTxnBytes shared its commit", st)
	}
	for _, name := range []string{"ConcurrentDisjoint", "Atomicity", "CounterRace"} {
		if err := kvtest.Checks()[name](testContext(t), s, name+"/"); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// twoNodes is one store made of two pgkv Stores on one database (two
// nodes): its Updates and Views alternate between them, so concurrent
// writes race across the nodes as well as within each.
type twoNodes struct {
	nodes     [2]*pgkv.Store
	n         atomic.Uint64
	conflicts atomic.Int64
}

func (s *twoNodes) next() *pgkv.Store { return s.nodes[s.n.Add(1)%2] }

func (s *twoNodes) View(ctx context.Context, fn func(kv.Reader) error) error {
	return s.next().View(ctx, fn)
}

func (s *twoNodes) Update(ctx context.Context, fn func(kv.Txn) error) error {
	err := s.next().Update(ctx, fn)
	if errors.Is(err, kv.ErrConflict) {
		s.conflicts.Add(1)
	}
	return err
}

func (s *twoNodes) Close() error {
	return errors.Join(s.nodes[0].Close(), s.nodes[1].Close())
}

// Writes racing across two nodes on one database serialise, or fail with
// kv.ErrConflict and are retried: the suite's race and isolation checks
// pass with every Update alternating between the nodes.
func TestTwoNodesOneDatabase(t *testing.T) {
	needServer(t)
	for name, check := range kvtest.Checks() {
		if name == "OnCommitOrder" {
			continue // hooks are ordered within one Store, not across nodes
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			var s twoNodes
			for i := range s.nodes {
				n, err := openDir(t, dir, pgkv.Options{})
				if err != nil {
					t.Fatal(err)
				}
				s.nodes[i] = n
			}
			defer s.Close()
			if err := check(testContext(t), &s, name+"/"); err != nil {
				t.Fatal(err)
			}
			t.Logf("%d updates failed with kv.ErrConflict and were retried", s.conflicts.Load())
			if (name == "CounterRace" || name == "UniquenessRace" || name == "WriteSkew") && s.conflicts.Load() == 0 {
				t.Errorf("no Update lost a race across the nodes: the check did not exercise conflicts")
			}
		})
	}
}
