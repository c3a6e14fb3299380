package pgkv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/jackc/pgx/v5"
)

// op is one Update waiting for the committer.
type op struct {
	fn   func(kv.Txn) error
	done chan error
}

func (s *Store) commitLoop() {
	defer close(s.loopDone)
	batch := make([]*op, 0, s.maxBatch)
	for {
		select {
		case o := <-s.ops:
			batch = append(batch[:0], o)
		case <-s.stop:
			// Refuse what is still queued rather than leave callers hanging.
			for {
				select {
				case o := <-s.ops:
					o.done <- kv.ErrClosed
				default:
					return
				}
			}
		}
	fill:
		for len(batch) < s.maxBatch {
			select {
			case o := <-s.ops:
				batch = append(batch, o)
			default:
				break fill
			}
		}
		for len(batch) > 0 {
			n := s.commit(batch)
			batch = batch[n:]
		}
	}
}

// commit runs a prefix of ops in one transaction and answers each: its
// own error if its fn failed, nil if it committed, or the batch's error
// (nothing of the batch kept, or for ErrCommitUnknown, perhaps all of
// it). It returns how many ops it took: it stops before an op whose
// writes would push the transaction past maxBytes (that op runs again,
// against the new state, in the next transaction).
func (s *Store) commit(ops []*op) int {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	results := make([]error, len(ops))
	taken, hooks, err := s.run(ctx, ops, results)
	if err != nil {
		taken = len(ops) // the batch failed: every op is answered
	}
	ops = ops[:taken]
	if err == nil {
		for _, h := range hooks {
			h()
		}
	}
	s.statMu.Lock()
	switch {
	case err == nil:
		s.stats.Commits++
		s.stats.Ops += uint64(len(ops))
	case isConflict(err):
		s.stats.Conflicts++
	}
	s.statMu.Unlock()
	if err != nil && !isConflict(err) {
		s.log.Warn("group commit failed", "updates", len(ops), "err", err)
	}
	for i, o := range ops {
		if err != nil {
			o.done <- err
		} else {
			o.done <- results[i]
		}
	}
	return taken
}

// run executes a prefix of the ops (see commit) and commits it,
// returning how many it took and the OnCommit hooks of those that
// succeeded, in order.
func (s *Store) run(ctx context.Context, ops []*op, results []error) (int, []func(), error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return 0, nil, dbError("begin", err)
	}
	// After a failure the transaction is rolled back (or its connection
	// closed); after COMMIT this does nothing.
	defer func() { _ = tx.Rollback(ctx) }()
	b := newBatch(ctx, tx)
	taken := 0
	for i, o := range ops {
		t := b.newTxn()
		err := o.fn(t)
		if b.err != nil {
			// A failed read aborts the database transaction, whatever fn
			// made of it.
			return 0, nil, b.err
		}
		if err == nil && taken > 0 && b.size+t.size > s.maxBytes {
			break
		}
		taken++
		if err != nil {
			results[i] = err
			continue
		}
		b.keep(t)
	}
	marker := newMarker()
	wrote, err := b.flush(marker, s.spent)
	if err != nil {
		return 0, nil, dbError("write", err)
	}
	if err := tx.Commit(ctx); err != nil {
		err = commitError(err)
		if !wrote || !errors.Is(err, ErrCommitUnknown) {
			return 0, nil, err
		}
		committed, rerr := s.resolve(marker)
		if rerr != nil {
			return 0, nil, fmt.Errorf("%w (and learning the outcome failed: %v)", err, rerr)
		}
		s.statMu.Lock()
		s.stats.Resolved++
		s.statMu.Unlock()
		if !committed {
			s.spent = append(s.spent, marker) // the fence's row
			return 0, nil, fmt.Errorf("pgkv commit: %w: the connection was lost and the transaction did not commit", ErrUnavailable)
		}
	}
	if wrote {
		// This transaction deleted the markers spent before it.
		s.spent = append(s.spent[:0], marker)
	}
	return taken, b.hooks, nil
}

// newMarker returns a batch's commit marker: random, so that no two
// batches of any node share one.
func newMarker() []byte {
	m := make([]byte, 16)
	_, _ = rand.Read(m) // never fails (crypto/rand)
	return m
}

// resolve learns whether the batch with the given marker committed after
// its connection was lost while COMMIT was in flight. It inserts the
// marker itself: if the server still runs the transaction, the insert
// waits for its end; a row already there means it committed, and a row
// inserted means it did not and now never can (its own insert of the
// marker would conflict). It retries while the database is unreachable,
// for BatchTimeout at most or until the store closes.
func (s *Store) resolve(marker []byte) (committed bool, err error) {
	deadline := time.Now().Add(s.timeout)
	wait := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		tag, err := s.pool.Exec(ctx, sqlFence, marker)
		cancel()
		if err == nil {
			return tag.RowsAffected() == 0, nil
		}
		if time.Until(deadline) < wait {
			return false, err
		}
		select {
		case <-s.stop:
			return false, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
