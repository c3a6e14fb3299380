package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/batchtask"
	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
	"github.com/iotgate/iotgate/registry/kv/groupcommit"
	"github.com/iotgate/iotgate/registry/kv/pgkv"
	"github.com/iotgate/iotgate/registry/regions"
)

// openedStore is the configured storage engine, open.
type openedStore struct {
	kv.Store
	// stats returns the engine's group-commit figures (/debug/vars).
	stats func() any
	// size is the engine's size on disk (/metrics); nil when the engine
	// does not say (PostgreSQL).
	size func() int64
	// backup writes a consistent backup (iotgate backup); nil for
	// PostgreSQL, which has its own tools.
	backup func(io.Writer) (int64, error)
}

// openStore opens store.engine: Badger in dataDir/db, or PostgreSQL,
// retried while it does not answer (see openPostgres). obs, when not
// nil, observes its writes (/metrics).
func openStore(ctx context.Context, c StoreConfig, dataDir string, log *slog.Logger, obs groupcommit.Observer) (*openedStore, error) {
	if c.Engine == enginePostgres {
		s, err := openPostgres(ctx, c.Postgres, log, obs)
		if err != nil {
			return nil, err
		}
		return &openedStore{Store: s, stats: func() any { return s.Stats() }}, nil
	}
	s, err := badgerkv.Open(badgerkv.Options{Dir: dataDir + "/db", Logger: log, Queues: registry.Queues(),
		MinFreeBytes: c.MinFreeBytes, BallastBytes: c.BallastBytes, Observer: obs, ReadOnly: c.readOnly})
	if err != nil {
		return nil, err
	}
	return &openedStore{Store: s, stats: func() any { return s.Stats() }, size: s.Size, backup: s.Backup}, nil
}

// storeLayout is every key family the binary's packages store, for
// engines that keep each in a table (pgkv).
func storeLayout() []kv.Family {
	return slices.Concat(registry.StoreLayout(), batchtask.StoreLayout(), regions.StoreLayout())
}

// Backoff between attempts to reach PostgreSQL at start.
const (
	pgFirstBackoff = 250 * time.Millisecond
	pgMaxBackoff   = 5 * time.Second
	// pgAttemptTimeout bounds one attempt (a server that accepts and
	// then says nothing).
	pgAttemptTimeout = 10 * time.Second
)

// openPostgres opens the PostgreSQL engine. A database that cannot be
// reached (refused, unanswered, starting up or shutting down) is retried
// with exponential backoff for c.StartTimeout, each failure logged;
// other refusals (authentication, a missing database, a schema newer
// than this binary) end the start at once. Errors name the server by
// its hosts and database, never by the URL, which may hold a password.
func openPostgres(ctx context.Context, c PostgresConfig, log *slog.Logger, obs groupcommit.Observer) (*pgkv.Store, error) {
	where := pgkv.Where(c.URL)
	deadline := time.Now().Add(c.StartTimeout)
	backoff := pgFirstBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, min(pgAttemptTimeout, max(time.Until(deadline), time.Second)))
		s, err := pgkv.Open(actx, pgkv.Options{URL: c.URL, MaxConns: c.MaxConns, Logger: log.With("component", "pgkv"), Observer: obs,
			Layout: storeLayout()})
		cancel()
		switch {
		case err == nil:
			if attempt > 1 {
				log.Info("PostgreSQL reached", "server", where, "attempts", attempt)
			}
			return s, nil
		case ctx.Err() != nil:
			return nil, ctx.Err()
		case !errors.Is(err, kv.ErrUnavailable):
			return nil, fmt.Errorf("store: PostgreSQL at %s: %w", where, err)
		case !time.Now().Before(deadline):
			return nil, fmt.Errorf("store: PostgreSQL at %s did not answer within store.postgres.start_timeout (%s, %d attempts): %w",
				where, c.StartTimeout, attempt, err)
		}
		wait := min(backoff, time.Until(deadline)) // the last attempt at the deadline
		log.Warn("PostgreSQL not reachable; retrying", "server", where, "in", wait, "err", err)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, pgMaxBackoff)
	}
}
