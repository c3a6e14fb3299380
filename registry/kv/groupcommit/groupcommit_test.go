package groupcommit

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// recorder is an Observer that keeps what it was told.
type recorder struct {
	mu      sync.Mutex
	written []time.Duration
	batches []int
}

func (r *recorder) Written(d time.Duration) {
	r.mu.Lock()
	r.written = append(r.written, d)
	r.mu.Unlock()
}
func (r *recorder) Committed(n int) { r.mu.Lock(); r.batches = append(r.batches, n); r.mu.Unlock() }

// TestObserver checks that every answered write is timed once and that
// the transactions' sizes add up to the writes, a batch split by its
// commit function counted as the transactions it became.
func TestObserver(t *testing.T) {
	rec := &recorder{}
	q := New(8, rec)
	release := make(chan struct{})
	go q.Run(func(batch []*Op) int {
		<-release
		// One op per transaction for the first batch's head, the rest
		// together: the observer must see both transactions.
		n := len(batch)
		if n > 1 {
			n = 1
		}
		for _, o := range batch[:n] {
			o.Answer(o.Fn(nil))
		}
		return n
	})
	errBoom := errors.New("boom")
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = q.Submit(context.Background(), func(kv.Txn) error {
				if i == 0 {
					return errBoom
				}
				return nil
			})
		}()
	}
	for range 5 {
		release <- struct{}{}
	}
	wg.Wait()
	q.Stop()
	if err := q.Submit(context.Background(), func(kv.Txn) error { return nil }); !errors.Is(err, kv.ErrClosed) {
		t.Fatalf("submit after stop: %v", err)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.written) != 5 {
		t.Errorf("written observed %d times, want 5 (a refused submit is not a write)", len(rec.written))
	}
	sum := 0
	for _, n := range rec.batches {
		sum += n
	}
	if sum != 5 || len(rec.batches) != 5 {
		t.Errorf("batches %v: want 5 transactions of 1", rec.batches)
	}
}

// TestNoObserver checks that a queue without an observer works.
func TestNoObserver(t *testing.T) {
	q := New(4, nil)
	go q.Run(func(batch []*Op) int {
		for _, o := range batch {
			o.Answer(nil)
		}
		return len(batch)
	})
	defer q.Stop()
	if err := q.Submit(context.Background(), func(kv.Txn) error { return nil }); err != nil {
		t.Fatal(err)
	}
}
