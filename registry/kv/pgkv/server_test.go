package pgkv_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
)

// server is the PostgreSQL every test of this binary shares (nil when
// it could not start; serverErr says why).
var (
	server    *pgtest.Server
	serverErr error
)

func TestMain(m *testing.M) {
	server, serverErr = pgtest.New()
	code := m.Run()
	if server != nil {
		server.Remove()
	}
	os.Exit(code)
}

// needServer skips the test when PostgreSQL is not installed, except
// under CI=true, where it must be (.ci/packages lists it).
func needServer(t testing.TB) *pgtest.Server {
	t.Helper()
	pgtest.Need(t, serverErr)
	return server
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
