package pgkv_test

import (
	"strings"
	"sync"
	"testing"

	"github.com/iotgate/iotgate/registry/kv/pgkv"
	"github.com/jackc/pgx/v5"
)

// Nodes starting together on a new database migrate it once; a database
// migrated by a newer binary is refused.
func TestMigrations(t *testing.T) {
	srv := needServer(t)
	ctx := testContext(t)
	url, err := srv.Database(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := pgkv.Open(ctx, pgkv.Options{URL: url})
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent open: %v", err)
		}
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var rows, version int
	if err := conn.QueryRow(ctx, "SELECT count(*), max(version) FROM schema_version").Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != version || version < 1 {
		t.Fatalf("schema_version: %d rows up to version %d, want one per migration", rows, version)
	}
	if _, err := conn.Exec(ctx, "INSERT INTO schema_version (version, name) VALUES ($1, 'from the future')", version+1); err != nil {
		t.Fatal(err)
	}
	_, err = pgkv.Open(ctx, pgkv.Options{URL: url})
	if err == nil || !strings.Contains(err.Error(), "newer than this binary") {
		t.Fatalf("open of a database from a newer binary: %v", err)
	}
}

// A URL that does not parse is refused without being repeated (it may
// hold a password).
func TestBadURL(t *testing.T) {
	_, err := pgkv.Open(testContext(t), pgkv.Options{URL: "postgres://u:s3cret@[::1/x"})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("open with a bad URL: %v", err)
	}
}
