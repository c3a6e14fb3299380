package registry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// getCounter counts the reads of device records inside writes (n) and
// inside views (views).
type getCounter struct {
	kv.Store
	n, views atomic.Int64
}

func (c *getCounter) View(ctx context.Context, fn func(kv.Reader) error) error {
	return c.Store.View(ctx, func(rd kv.Reader) error { return fn(countingReads{rd, &c.views}) })
}

type countingReads struct {
	kv.Reader
	n *atomic.Int64
}

func (r countingReads) Get(k []byte) ([]byte, error) {
	if bytes.HasPrefix(k, prefixKey(famDevice)) {
		r.n.Add(1)
	}
	return r.Reader.Get(k)
}

type countingTxn struct {
	kv.Txn
	n *atomic.Int64
}

func (c *getCounter) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return c.Store.Update(ctx, func(t kv.Txn) error { return fn(countingTxn{t, &c.n}) })
}

func (t countingTxn) Get(k []byte) ([]byte, error) {
	if bytes.HasPrefix(k, prefixKey(famDevice)) {
		t.n.Add(1)
	}
	return t.Txn.Get(k)
}

// waitFilter waits until r's key filter has loaded.
func waitFilter(t *testing.T, r *Registry) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !r.keys.ready.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("key filter not loaded")
		}
	}
}

// Once loaded, the filter spares a create the read of its absent device
// id, and still refuses every duplicate: of a device stored before the
// node started, of one created since, of one deleted and created again,
// and of two creates of one id racing in one batch.
func TestKeyFilter(t *testing.T) {
	ctx := context.Background()
	s := memStore(t)
	first := openWithKey(t, s, 1)
	mustProduct(t, first, "p", "m", "MQTT")
	if _, err := first.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: "old"}); err != nil {
		t.Fatal(err)
	}
	first.Close()

	counter := &getCounter{Store: s}
	r := openWithKey(t, counter, 1)
	// Before the filter has loaded (or if it never does) creates read.
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: "old"}); !isConflict(err) {
		t.Fatalf("duplicate of a stored device: %v", err)
	}
	waitFilter(t, r)

	counter.n.Store(0)
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: "new"}); err != nil {
		t.Fatal(err)
	}
	if n := counter.n.Load(); n != 0 {
		t.Errorf("a create of a new id read %d device records in its write, want 0", n)
	}
	for _, node := range []string{"old", "new"} {
		if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: node}); !isConflict(err) {
			t.Errorf("duplicate of %s: %v, want a conflict", node, err)
		}
	}
	if err := r.DeleteDevice(ctx, "p", "m_new"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: "new"}); err != nil {
		t.Fatalf("created again after its deletion: %v", err)
	}

	// Racing creates of one id: exactly one wins.
	for round := range 20 {
		var wins atomic.Int64
		var wg sync.WaitGroup
		for range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := r.CreateDevice(ctx, NewDevice{ProjectID: "p", ProductID: "m", NodeID: fmt.Sprint("race", round)})
				switch {
				case err == nil:
					wins.Add(1)
				case !isConflict(err):
					t.Error(err)
				}
			}()
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Fatalf("round %d: %d creates of one id succeeded", round, wins.Load())
		}
	}
}

func isConflict(err error) bool {
	var ce *ConflictError
	return errors.As(err, &ce)
}
