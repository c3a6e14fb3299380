// Package groupcommit is the write queue the storage engines share: every
// Update waits in one queue, and one committer goroutine takes the writes
// waiting at that moment as a batch, commits them in one durable
// transaction (the engine's commit function) and answers each. One sync
// to disk then serves many writes, and the engine's transactions are built
// on one goroutine.
package groupcommit

import (
	"context"
	"sync"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
)

// Op is one Update waiting for the committer.
type Op struct {
	Fn   func(kv.Txn) error
	done chan error
}

// Answer tells the Update waiting on o its outcome. The commit function
// answers every Op it takes, once.
func (o *Op) Answer(err error) { o.done <- err }

// Observer is told how long each write waited for its outcome and how
// many writes each transaction carried (the platform's metrics). Its
// methods run on the write path: they must be cheap and never block.
type Observer interface {
	// Written is told, once per Update the committer answered, how long
	// it took from Submit to the answer.
	Written(took time.Duration)
	// Committed is told the number of Updates one transaction took.
	Committed(ops int)
}

// Queue is the write queue of one store.
type Queue struct {
	ops      chan *Op
	stop     chan struct{}
	done     chan struct{}
	once     sync.Once
	maxBatch int
	obs      Observer // nil: none
}

// New returns a queue whose batches hold at most maxBatch writes; obs,
// when not nil, observes them.
func New(maxBatch int, obs Observer) *Queue {
	return &Queue{ops: make(chan *Op, 1024), stop: make(chan struct{}), done: make(chan struct{}), maxBatch: maxBatch, obs: obs}
}

// Submit queues fn and waits for its outcome.
func (q *Queue) Submit(ctx context.Context, fn func(kv.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o := &Op{Fn: fn, done: make(chan error, 1)}
	var start time.Time
	if q.obs != nil {
		start = time.Now()
	}
	select {
	case q.ops <- o:
	case <-q.stop:
		return kv.ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued the write may commit, so wait for the outcome even if
	// ctx ends: the caller must never be told "failed" for a kept write.
	select {
	case err := <-o.done:
		if q.obs != nil {
			q.obs.Written(time.Since(start))
		}
		return err
	case <-q.done:
		// The committer has exited; it may still have answered us.
		select {
		case err := <-o.done:
			return err
		default:
			return kv.ErrClosed
		}
	}
}

// Run is the committer: it hands commit each batch until Stop. commit
// runs a prefix of the batch in one transaction, answers those Ops and
// returns how many it took; the rest go to the next call.
func (q *Queue) Run(commit func(batch []*Op) int) {
	defer close(q.done)
	batch := make([]*Op, 0, q.maxBatch)
	for {
		select {
		case o := <-q.ops:
			batch = append(batch[:0], o)
		case <-q.stop:
			// Refuse what is still queued rather than leave callers hanging.
			for {
				select {
				case o := <-q.ops:
					o.Answer(kv.ErrClosed)
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < q.maxBatch {
			select {
			case o := <-q.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		for len(batch) > 0 {
			n := commit(batch)
			if q.obs != nil {
				q.obs.Committed(n)
			}
			batch = batch[n:]
		}
	}
}

// Stop refuses new writes, lets the batch being committed finish, answers
// the writes still queued with kv.ErrClosed and returns once Run has.
func (q *Queue) Stop() {
	q.once.Do(func() { close(q.stop) })
	<-q.done
}

// Stopping is closed once Stop has been called.
func (q *Queue) Stopping() <-chan struct{} { return q.stop }

// Queued reports how many writes wait for the committer.
func (q *Queue) Queued() int { return len(q.ops) }
