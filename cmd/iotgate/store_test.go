package main

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv"
	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
	"github.com/jackc/pgx/v5"
)

// The binary opens PostgreSQL with every package's layout (a device
// record is a row of devices, not of kv), and the migrations create
// exactly the tables that layout names (besides the engine's own): no
// family of the binary is left in kv, and no table is left without a
// family.
func TestStoreLayoutTables(t *testing.T) {
	if err := kv.CheckLayout(storeLayout()); err != nil {
		t.Fatal(err)
	}
	srv := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := srv.Database(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	s, err := openPostgres(ctx, PostgresConfig{URL: url, StartTimeout: 10 * time.Second}, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, _ := conn.Query(ctx, `SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() ORDER BY 1`)
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kv", "kv_commits", "schema_version"}
	for _, f := range storeLayout() {
		want = append(want, f.Table)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("tables %q\nwant %q", got, want)
	}
	if err := s.Update(ctx, func(tx kv.Txn) error { return tx.Set([]byte("d\x00dev-1"), []byte("record")) }); err != nil {
		t.Fatal(err)
	}
	var devices, inKV int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM devices WHERE device_id = 'dev-1'), (SELECT count(*) FROM kv)`).Scan(&devices, &inKV); err != nil {
		t.Fatal(err)
	}
	if devices != 1 || inKV != 0 {
		t.Fatalf("a device record: %d rows in devices, %d in kv; want 1 and 0", devices, inKV)
	}
}
