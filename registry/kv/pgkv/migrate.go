package pgkv

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
)

// migrations are the schema's steps, named NNNN_what.sql and applied in
// order, each in its own transaction with its row in schema_version.
//
//go:embed migrations/*.sql
var migrations embed.FS

// migrationLock is the advisory lock nodes starting together take while
// they migrate ("iotgate" in ASCII). It is held only during Open.
const migrationLock int64 = 0x696f7467617465

type migration struct {
	version int
	name    string
	sql     string
}

// loadMigrations reads the embedded steps in version order.
func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, path := range names {
		name := strings.TrimPrefix(path, "migrations/")
		num, _, ok := strings.Cut(name, "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 {
			return nil, fmt.Errorf("pgkv: migration %q is not named NNNN_what.sql", name)
		}
		text, err := fs.ReadFile(fsys, path)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: name, sql: string(text)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i := range ms {
		if ms[i].version != i+1 {
			return nil, fmt.Errorf("pgkv: migration %q: versions must run 1, 2, 3... without gaps", ms[i].name)
		}
	}
	return ms, nil
}

// migrate brings the database's schema to this binary's version, under
// an advisory lock so that nodes starting together migrate once. A
// database whose schema is newer than this binary knows is refused.
// With a layout, it then checks the families' tables and moves the rows
// of declared families that the kv table still holds into them, under
// the same lock, before the store serves.
func migrate(ctx context.Context, pool *pgxpool.Pool, lay *layout) error {
	ms, err := loadMigrations(migrations)
	if err != nil {
		return err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return dbError("connect", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", migrationLock); err != nil {
		return dbError("take the migration lock", err)
	}
	defer func() {
		// A session lock: if it cannot be released, drop the session.
		if _, err := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", migrationLock); err != nil {
			_ = conn.Conn().Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_version (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return dbError("create schema_version", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_version").Scan(&current); err != nil {
		return dbError("read schema_version", err)
	}
	if current > len(ms) {
		return fmt.Errorf("pgkv: the database's schema is at version %d, newer than this binary's %d: run a newer iotgate", current, len(ms))
	}
	for _, m := range ms[current:] {
		tx, err := conn.Begin(ctx)
		if err != nil {
			return dbError("migrate", err)
		}
		if _, err := tx.Exec(ctx, m.sql); err != nil {
			_ = tx.Rollback(ctx)
			return dbError("migration "+m.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, $2)", m.version, m.name); err != nil {
			_ = tx.Rollback(ctx)
			return dbError("migration "+m.name, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return dbError("migration "+m.name, err)
		}
	}
	if lay == nil {
		return nil
	}
	if err := lay.checkSchema(ctx, conn); err != nil {
		return err
	}
	_, err = lay.moveFromKV(ctx, conn)
	return err
}
