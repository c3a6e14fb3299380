// Package pgkv is the shared storage engine of iotgate: kv.Store on
// PostgreSQL (through pgx), for several nodes on one database.
//
// Tables: the registry's storage seam is an ordered, transactional
// key-value store (see registry/kv), and its key families (records,
// every index, deadline queues, sharded counters; see registry/keys.go)
// are laid out so that each is a key range. Here each family the layout
// declares (Options.Layout: registry.StoreLayout and its subpackages')
// is a table of its own, created by the embedded migrations: the key's
// parts are typed columns (text in the "C" collation, fixed-length
// bytea) and the primary key, the value a typed column. So every
// hot-path index is a unique constraint the database enforces (devices
// by device_id, node_ids for CoAP products, product_node_ids,
// fingerprints, activation_entries by Alibaba product key and device
// name), a lookup is one primary-key lookup, and the rows can be read
// with plain SQL. A scan within a family is a range query on its table
// (equality on the parts its prefix fixes, row-value comparisons for
// its bounds, in primary-key order); the table's order is the keys'
// byte order because text parts hold no 0 byte and binary parts have a
// fixed length (kv.Family.Split refuses a key that breaks this: a
// registry bug, reported as an error naming the family, never stored
// elsewhere). A scan across families visits their tables in key order,
// merged with the kv table (key bytea primary key, value bytea), which
// keeps the keys of no declared family. Open checks each declared
// family's table and its columns (a binary newer than its schema stops
// there rather than write to the wrong table), and moves the rows of
// declared families that kv still holds (a database of an earlier
// version) into their tables, a thousand rows a transaction, under the
// migration lock. The rules that keep records and their index entries
// in agreement stay in the domain, once, for every engine.
//
// Transactions: Update runs in a SERIALIZABLE transaction. Like the
// Badger engine, one committer goroutine per Store packs the Updates
// waiting at that moment into one transaction (group commit): each
// Update's reads go to the database inside that transaction, its writes
// are staged in memory (and seen by its own reads and by the Updates
// after it in the batch), and the writes of the Updates whose functions
// succeeded are applied at the end with one upsert (from unnest
// arrays) and one delete (= ANY, or IN over unnest) per table the batch
// touches, sent with COMMIT in one round trip; BEGIN goes out with the first read. A View runs in a
// REPEATABLE READ READ ONLY transaction, begun the same way: one
// snapshot, which never conflicts. Scans are range queries on the primary key, fetched in pages (32
// rows, doubling to 256, fewer when rows are large), so a scan that stops
// early reads little and a long one never holds its whole range.
//
// Conflicts: Updates of one Store never race each other (one committer),
// but Updates of several Stores on one database (several nodes) can. A
// serialisation failure or a deadlock (SQLSTATE 40001, 40P01) fails the
// whole batch: every Update in it returns kv.ErrConflict, nothing of the
// batch is kept, and the registry re-runs each write. (Updates that read
// every shard of a sharded counter, as the device quota checks do, and
// write one conflict across nodes: sharding spares a hot row, not the
// serialisation.) Other failures are never reported as success: a lost connection or a refusal before
// COMMIT returns an error (ErrUnavailable when the database could not be
// reached, kv.ErrFull when the server is out of disk space) with nothing
// written. When the connection is lost while
// COMMIT is in flight, the committer learns the outcome: every batch that
// writes also inserts a random marker row (kv_commits), and the committer
// inserts the same marker again on a new connection, which waits for the
// transaction if the server still runs it; a marker already there means
// the batch committed (its Updates succeed, their OnCommit functions
// run), one inserted means it did not and never will (ErrUnavailable).
// Only when the database stays unreachable for BatchTimeout is the
// outcome reported unknown (ErrCommitUnknown): the write may be kept.
//
// Supported: PostgreSQL 13 or later (the tests run on Debian's, 15
// today), with the server's defaults for durability (fsync and
// synchronous_commit on: an acknowledged Update is on disk). The SQL is
// kept to the subset CockroachDB and YugabyteDB also run: plain tables,
// INSERT ... ON CONFLICT, unnest and = ANY over arrays, row-value
// comparisons, information_schema, no LISTEN/NOTIFY,
// no stored procedures, and no advisory lock in the data path (one is
// taken only while the embedded migrations are applied at Open). Neither
// is tested in CI.
package pgkv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/groupcommit"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Options configures the engine.
type Options struct {
	// URL is the database's connection string, in pgx syntax (a URL or
	// key=value pairs; several hosts and target_session_attrs=read-write
	// for failover).
	URL string
	// MaxConns bounds the connection pool. Zero keeps the URL's
	// pool_max_conns, or pgx's default (the greater of 4 and the number
	// of CPUs). The committer holds one connection per batch; Views
	// share the rest.
	MaxConns int32
	// MaxBatch bounds how many Updates share one transaction. Zero means
	// 128. Larger batches amortise more round trips and commits, but a
	// conflict with another node fails the whole batch.
	MaxBatch int
	// MaxTxnBytes bounds the keys and values one transaction writes (an
	// Update larger than it commits alone). Zero means 32 MiB, so that a
	// batch of large values (1 MB messages) stays a modest statement.
	MaxTxnBytes int
	// BatchTimeout bounds one group-commit transaction, from BEGIN to
	// COMMIT, and then, if the connection was lost during COMMIT, how long
	// the committer keeps trying to learn the outcome. Zero means 30 s.
	BatchTimeout time.Duration
	// Logger gets a warning for each batch that fails other than by a
	// conflict (nil: nothing is logged).
	Logger *slog.Logger
	// Observer, when set, is told each write's latency and each
	// transaction's size (the platform's metrics).
	Observer groupcommit.Observer
	// Layout declares the key families kept in tables of their own (the
	// registry's: registry.StoreLayout and its subpackages'). Keys of no
	// declared family are kept in the kv table. Every family's table must
	// exist with the declared columns (the migrations create the
	// registry's); Open refuses to start otherwise.
	Layout []kv.Family
}

// ErrUnavailable wraps a failure to reach the database (a lost or
// refused connection, a timeout, a server shutting down) that left
// nothing of the Update written: it struck before COMMIT, or during
// COMMIT and the committer then learnt that the transaction did not
// commit.
var ErrUnavailable = fmt.Errorf("pgkv: database unavailable: %w", kv.ErrUnavailable)

// ErrCommitUnknown wraps the loss of the connection while COMMIT was in
// flight when the database then stayed unreachable for BatchTimeout, so
// that the outcome could not be learnt: the Update may or may not have
// been kept, and its OnCommit functions have not run.
var ErrCommitUnknown = fmt.Errorf("pgkv: %w", kv.ErrOutcomeUnknown)

// Store is kv.Store on PostgreSQL.
type Store struct {
	pool     *pgxpool.Pool
	layout   *layout
	log      *slog.Logger
	maxBatch int
	maxBytes int
	timeout  time.Duration

	q         *groupcommit.Queue
	closeOnce sync.Once
	closed    atomic.Bool

	// spent are the commit markers of batches known to have committed
	// (or fenced off), deleted by the next batch that writes. Committer
	// only.
	spent [][]byte

	statMu sync.Mutex
	stats  Stats
}

var _ kv.Store = (*Store)(nil)

// Stats counts the committer's transactions since the store was opened:
// Ops/Commits is how many Updates share one commit; Conflicts counts the
// batches that failed with kv.ErrConflict; Resolved counts the batches
// whose connection was lost while COMMIT was in flight and whose outcome
// was then learnt from their commit marker.
type Stats struct {
	Commits   uint64 `json:"commits"`
	Ops       uint64 `json:"ops"`
	Conflicts uint64 `json:"conflicts"`
	Resolved  uint64 `json:"resolved"`
}

// Open connects to the database, applies the embedded migrations it
// lacks, and starts the committer.
func Open(ctx context.Context, o Options) (*Store, error) {
	lay, err := newLayout(o.Layout)
	if err != nil {
		return nil, err
	}
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		// pgx's parse errors quote the URL, redacting passwords only on a
		// best-effort basis: name the problem, not the text.
		return nil, errors.New("pgkv: the database URL does not parse (not repeated here: it may hold a password)")
	}
	if o.MaxConns > 0 {
		cfg.MaxConns = o.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgkv: connect: %w", err)
	}
	if err := migrate(ctx, pool, lay); err != nil {
		pool.Close()
		return nil, err
	}
	// Markers the last batches of stopped nodes left behind.
	if _, err := pool.Exec(ctx, sqlOldMarks); err != nil {
		pool.Close()
		return nil, dbError("delete old commit markers", err)
	}
	s := &Store{
		pool:     pool,
		layout:   lay,
		log:      o.Logger,
		maxBatch: o.MaxBatch,
		maxBytes: o.MaxTxnBytes,
		timeout:  o.BatchTimeout,
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.maxBatch <= 0 {
		s.maxBatch = 128
	}
	if s.maxBytes <= 0 {
		s.maxBytes = 32 << 20
	}
	if s.timeout <= 0 {
		s.timeout = 30 * time.Second
	}
	s.q = groupcommit.New(s.maxBatch, o.Observer)
	go s.q.Run(s.commit)
	return s, nil
}

// Stats reports the group commit so far.
func (s *Store) Stats() Stats {
	s.statMu.Lock()
	defer s.statMu.Unlock()
	return s.stats
}

// Close stops the committer after the batch it is running (Updates still
// queued get kv.ErrClosed), then closes the pool once the Views in
// progress end.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.q.Stop()
		s.pool.Close()
	})
	return nil
}

// View runs fn in a read-only transaction on one snapshot, begun with
// fn's first read.
func (s *Store) View(ctx context.Context, fn func(kv.Reader) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return kv.ErrClosed
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		if s.closed.Load() {
			return kv.ErrClosed
		}
		return dbError("view", err)
	}
	// The pool drops a connection released inside a transaction, so one
	// whose ROLLBACK failed is not reused.
	defer conn.Release()
	r := &reader{ctx: ctx, conn: conn, begin: sqlBeginView, view: true, lay: s.layout}
	err = fn(r)
	if r.begun {
		// What fn read is valid whatever ending the read-only transaction
		// meets; a caller that has gone does not stop it.
		end, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_, _ = conn.Exec(end, sqlRollback)
		cancel()
	}
	if err == nil && r.err != nil { // fn swallowed a failed read
		err = r.err
	}
	return err
}

// Update queues fn for the committer and waits for its outcome.
func (s *Store) Update(ctx context.Context, fn func(kv.Txn) error) error {
	return s.q.Submit(ctx, fn)
}

// Queued reports how many Updates wait for the committer.
func (s *Store) Queued() int { return s.q.Queued() }
