package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
)

// A database that does not answer is retried for start_timeout, each
// failure logged, then the start fails naming the server, never the
// password.
func TestOpenPostgresUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	start := time.Now()
	_, err = openPostgres(context.Background(), PostgresConfig{
		URL:          "postgres://iotgate:hunter2@127.0.0.1:" + strconv.Itoa(port) + "/iotgate?sslmode=disable",
		StartTimeout: 1500 * time.Millisecond}, log, nil)
	took := time.Since(start)
	if err == nil {
		t.Fatal("opened a database nobody serves")
	}
	where := "127.0.0.1:" + strconv.Itoa(port) + "/iotgate"
	if msg := err.Error(); !strings.Contains(msg, where) || !strings.Contains(msg, "start_timeout") || strings.Contains(msg, "hunter2") {
		t.Fatalf("error %q: want the server %s and start_timeout, without the password", msg, where)
	}
	if n := strings.Count(logs.String(), "PostgreSQL not reachable; retrying"); n < 2 || strings.Contains(logs.String(), "hunter2") {
		t.Fatalf("%d retries logged (want at least 2, without the password):\n%s", n, logs.String())
	}
	if took < time.Second || took > 10*time.Second {
		t.Fatalf("gave up after %s, want about start_timeout (1.5 s)", took)
	}
}

// testBus is a clusterBus that is always reachable.
type testBus struct{ closed bool }

func (b *testBus) Invalidator() registry.Invalidator { return nil }
func (b *testBus) EventHints() registry.EventHinter  { return nil }
func (b *testBus) Link() registry.NodeLink           { return nil }
func (b *testBus) Healthy() error                    { return nil }
func (b *testBus) Close() error                      { b.closed = true; return nil }

func pgConfig(t *testing.T, url, nodeID string) *Config {
	cfg := defaultConfig()
	cfg.DataDir = t.TempDir()
	cfg.Store.Engine = enginePostgres
	cfg.Store.Postgres.URL = url
	cfg.Store.Postgres.MaxConns = 4
	if nodeID != "" {
		cfg.Cluster = ClusterConfig{NodeID: nodeID, NATSURL: "nats://127.0.0.1:4222"}
	}
	if err := cfg.validate(); err != nil {
		t.Fatal(err)
	}
	return &cfg
}

// On PostgreSQL: a node whose master key differs from the one the store
// was sealed with refuses to start, saying so; a clustered node is
// named, joins the bus (and leaves it when closed), and starts while NATS
// is down.
func TestOpenNodePostgres(t *testing.T) {
	srv := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	url, err := srv.Database(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	keyA, keyB := bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)

	bus := &testBus{}
	n, err := openNode(ctx, pgConfig(t, url, "node-1"), keyA, log,
		func(context.Context, ClusterConfig, *slog.Logger) (clusterBus, error) { return bus, nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.name != "node-1" || n.busHealth() == nil {
		t.Fatalf("node %q, bus %v", n.name, n.busHealth())
	}
	if err := n.reg.Heartbeat(ctx, registry.NodeInfo{Started: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if nodes, err := n.reg.Nodes(ctx); err != nil || len(nodes) != 1 || nodes[0].Node != "node-1" {
		t.Fatalf("nodes %+v %v", nodes, err)
	}
	n.close()
	if !bus.closed {
		t.Fatal("closing the node left the bus open")
	}

	_, err = openNode(ctx, pgConfig(t, url, ""), keyB, log, natsBus, nil)
	if !errors.Is(err, registry.ErrMasterKeyMismatch) || !strings.Contains(err.Error(), "master key differs") {
		t.Fatalf("another master key: %v, want the master key mismatch", err)
	}
	// NATS down (nothing listens on the configured URL): the node starts
	// and says the bus is unreachable.
	n2, err := openNode(ctx, pgConfig(t, url, "node-2"), keyA, log, natsBus, nil)
	if err != nil {
		t.Fatalf("clustered with NATS down: %v, want the node to start", err)
	}
	if err := n2.busHealth().Healthy(); err == nil {
		t.Fatal("NATS down: the bus reports healthy")
	}
	n2.close()
	n, err = openNode(ctx, pgConfig(t, url, ""), keyA, log, natsBus, nil)
	if err != nil {
		t.Fatalf("the store's key, single node: %v", err)
	}
	defer n.close()
	if n.name != registry.LocalNode || n.busHealth() != nil {
		t.Fatalf("single node %q, bus %v", n.name, n.busHealth())
	}
}
