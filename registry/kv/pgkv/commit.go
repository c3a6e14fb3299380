package pgkv

import (
	"context"

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
		s.commit(batch)
	}
}

// commit runs the ops in one transaction and answers each: its own error
// if its fn failed, nil if it committed, or the batch's error (nothing of
// the batch kept, or for ErrCommitUnknown, perhaps all of it).
func (s *Store) commit(ops []*op) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	results := make([]error, len(ops))
	hooks, err := s.run(ctx, ops, results)
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
}

// run executes the batch and commits it, returning the OnCommit hooks of
// the Updates that succeeded, in order.
func (s *Store) run(ctx context.Context, ops []*op, results []error) ([]func(), error) {
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.Serializable})
	if err != nil {
		return nil, dbError("begin", err)
	}
	// After a failure the transaction is rolled back (or its connection
	// closed); after COMMIT this does nothing.
	defer func() { _ = tx.Rollback(ctx) }()
	b := newBatch(ctx, tx)
	for i, o := range ops {
		t := b.newTxn()
		err := o.fn(t)
		if b.err != nil {
			// A failed read aborts the database transaction, whatever fn
			// made of it.
			return nil, b.err
		}
		if err != nil {
			results[i] = err
			continue
		}
		b.keep(t)
	}
	if err := b.flush(); err != nil {
		return nil, dbError("write", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, commitError(err)
	}
	return b.hooks, nil
}
