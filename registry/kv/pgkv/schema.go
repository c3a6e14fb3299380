package pgkv

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// sqlColumns and sqlPrimaryKeys describe the schema's tables, for
// checkSchema.
const (
	sqlColumns = `SELECT table_name, column_name, data_type, coalesce(collation_name, '')
		FROM information_schema.columns WHERE table_schema = current_schema()
		ORDER BY table_name, ordinal_position`
	sqlPrimaryKeys = `SELECT k.table_name, k.column_name
		FROM information_schema.table_constraints c
		JOIN information_schema.key_column_usage k
		  ON k.constraint_schema = c.constraint_schema AND k.constraint_name = c.constraint_name
		WHERE c.constraint_type = 'PRIMARY KEY' AND c.table_schema = current_schema()
		ORDER BY k.table_name, k.ordinal_position`
	// moveBatch bounds the rows one transaction moves out of kv.
	moveBatch = 1000
)

// SchemaError is a family whose table is missing or differs from the
// layout: the binary is newer than its schema, and writing its keys to
// the kv table would hide them from the binaries that use the table.
type SchemaError struct {
	Family, Table, Problem string
}

func (e *SchemaError) Error() string {
	return fmt.Sprintf("pgkv: family %q: table %s %s (the schema does not match this binary's layout)", e.Family, e.Table, e.Problem)
}

// checkSchema checks that every family's table exists with its columns,
// typed as declared (text columns in the "C" collation, for byte order),
// and its parts as primary key.
func (l *layout) checkSchema(ctx context.Context, conn *pgxpool.Conn) error {
	type column struct{ name, typ, coll string }
	cols := map[string][]column{}
	pks := map[string][]string{}
	rows, err := conn.Query(ctx, sqlColumns)
	if err != nil {
		return dbError("read the schema", err)
	}
	for rows.Next() {
		var t string
		var c column
		if err := rows.Scan(&t, &c.name, &c.typ, &c.coll); err != nil {
			rows.Close()
			return dbError("read the schema", err)
		}
		cols[t] = append(cols[t], c)
	}
	if rows.Close(); rows.Err() != nil {
		return dbError("read the schema", rows.Err())
	}
	rows, err = conn.Query(ctx, sqlPrimaryKeys)
	if err != nil {
		return dbError("read the schema", err)
	}
	for rows.Next() {
		var t, c string
		if err := rows.Scan(&t, &c); err != nil {
			rows.Close()
			return dbError("read the schema", err)
		}
		pks[t] = append(pks[t], c)
	}
	if rows.Close(); rows.Err() != nil {
		return dbError("read the schema", rows.Err())
	}
	for _, t := range l.tables {
		f := &t.fam
		want := make([]column, 0, len(f.Parts)+1)
		for _, c := range f.Parts {
			want = append(want, columnOf(c))
		}
		if f.Value.Kind != kv.None {
			want = append(want, columnOf(f.Value))
		}
		got, ok := cols[f.Table]
		if !ok {
			return &SchemaError{f.Name, f.Table, "does not exist"}
		}
		if !slices.Equal(got, want) {
			return &SchemaError{f.Name, f.Table, fmt.Sprintf("has columns %v, want %v", got, want)}
		}
		if !slices.Equal(pks[f.Table], t.cols) && len(f.Parts) > 0 {
			return &SchemaError{f.Name, f.Table, fmt.Sprintf("has primary key (%s), want (%s)",
				strings.Join(pks[f.Table], ", "), strings.Join(t.cols, ", "))}
		}
	}
	return nil
}

func columnOf(c kv.Column) struct{ name, typ, coll string } {
	if c.Kind == kv.Text {
		return struct{ name, typ, coll string }{c.Name, "text", "C"}
	}
	return struct{ name, typ, coll string }{c.Name, "bytea", ""}
}

// moveFromKV moves the rows of declared families that the kv table holds
// (a database written before its families had tables) into their
// tables, moveBatch rows a transaction: each moved row is inserted and
// deleted in one, so an interrupted move loses nothing and the next
// Open resumes it. A row its family cannot hold stops the start.
func (l *layout) moveFromKV(ctx context.Context, conn *pgxpool.Conn) (int, error) {
	moved := 0
	for _, t := range l.tables {
		for {
			n, err := t.moveSome(ctx, conn)
			moved += n
			if err != nil {
				return moved, err
			}
			if n < moveBatch {
				break
			}
		}
	}
	return moved, nil
}

func (t *table) moveSome(ctx context.Context, conn *pgxpool.Conn) (int, error) {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return 0, dbError("move rows out of kv", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	rows, err := tx.Query(ctx, sqlAsc, []byte(t.prefix), t.end, moveBatch)
	if err != nil {
		return 0, dbError("move rows out of kv", err)
	}
	var w writes
	var keys [][]byte
	for rows.Next() {
		var k, v []byte
		if err := rows.Scan(&k, &v); err != nil {
			rows.Close()
			return 0, dbError("move rows out of kv", err)
		}
		if !t.fam.Member(k) {
			continue // a key of no family beside a family without parts
		}
		if _, err := t.fam.Split(k); err != nil {
			rows.Close()
			return 0, fmt.Errorf("pgkv: moving the kv table's rows to their tables: %w", err)
		}
		if err := t.checkValue(k, v); err != nil {
			rows.Close()
			return 0, fmt.Errorf("pgkv: moving the kv table's rows to their tables: %w", err)
		}
		t.add(&w, k, v, false)
		keys = append(keys, k)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, dbError("move rows out of kv", err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	var b pgx.Batch
	b.Queue(t.upsert, w.setCols...)
	b.Queue(sqlDeleteMany, keys)
	if err := tx.SendBatch(ctx, &b).Close(); err != nil {
		return 0, dbError("move rows out of kv", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, dbError("move rows out of kv", err)
	}
	return len(keys), nil
}
