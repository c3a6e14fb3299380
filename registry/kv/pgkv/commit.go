package pgkv

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/registry/kv/groupcommit"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// commit runs a prefix of ops in one transaction and answers each: its
// own error if its fn failed, nil if it committed, or the batch's error
// (nothing of the batch kept, or for ErrCommitUnknown, perhaps all of
// it). It returns how many ops it took: it stops before an op whose
// writes would push the transaction past maxBytes (that op runs again,
// against the new state, in the next transaction).
func (s *Store) commit(ops []*groupcommit.Op) int {
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
			o.Answer(err)
		} else {
			o.Answer(results[i])
		}
	}
	return taken
}

// run executes a prefix of the ops (see commit) and commits it,
// returning how many it took and the OnCommit hooks of those that
// succeeded, in order.
func (s *Store) run(ctx context.Context, ops []*groupcommit.Op, results []error) (int, []func(), error) {
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return 0, nil, dbError("connect", err)
	}
	// The pool drops a connection released inside a transaction.
	defer conn.Release()
	b := newBatch(ctx, conn, s.layout)
	// abort ends a transaction left open by a failure.
	abort := func() {
		if pc := conn.Conn().PgConn(); !pc.IsClosed() && pc.TxStatus() != 'I' {
			_, _ = conn.Exec(ctx, sqlRollback)
		}
	}
	taken := 0
	for i, o := range ops {
		t := b.newTxn()
		err := o.Fn(t)
		if b.err != nil {
			// A failed read aborts the database transaction, whatever fn
			// made of it.
			abort()
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
	var q pgx.Batch
	wrote := b.queueEnd(&q, marker, s.spent)
	if q.Len() == 0 {
		return taken, b.hooks, nil // nothing read, nothing written
	}
	err = sendEnd(ctx, conn, &q)
	var pe *pgconn.PgError
	switch {
	case err == nil:
	case !wrote || (errors.As(err, &pe) && severity(pe) == "ERROR"):
		// The server refused a write or COMMIT itself (a write refused
		// aborts the transaction and the server skips the COMMIT after
		// it), or the batch had nothing to keep.
		abort()
		return 0, nil, dbError("commit", err)
	default:
		// The connection failed somewhere in the last round trip: COMMIT
		// may have run. Learn the outcome from the marker.
		committed, rerr := s.resolve(marker)
		if rerr != nil {
			return 0, nil, fmt.Errorf("pgkv commit: %w: %w (and learning the outcome failed: %v)", ErrCommitUnknown, err, rerr)
		}
		s.statMu.Lock()
		s.stats.Resolved++
		s.statMu.Unlock()
		if !committed {
			s.spent = append(s.spent, marker) // the fence's row
			return 0, nil, fmt.Errorf("pgkv commit: %w: the connection was lost and the transaction did not commit: %w", ErrUnavailable, err)
		}
	}
	if wrote {
		// This transaction deleted the markers spent before it.
		s.spent = append(s.spent[:0], marker)
	}
	return taken, b.hooks, nil
}

// sendEnd sends the batch's last statements (ending with COMMIT) in one
// round trip and returns the first error.
func sendEnd(ctx context.Context, conn *pgxpool.Conn, q *pgx.Batch) error {
	n := q.Len()
	br := conn.SendBatch(ctx, q)
	var err error
	for range n {
		if _, err = br.Exec(); err != nil {
			break
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	return err
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
		case <-s.q.Stopping():
			return false, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}
