package test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
)

// postgresStore starts a PostgreSQL server for t and returns the config
// lines (for GateOptions.Extra) of a store on a fresh database of it.
func postgresStore(t *testing.T) string {
	t.Helper()
	return postgresConfig(postgresDatabase(t))
}

// postgresDatabase starts a PostgreSQL server for t and returns the URL
// of a fresh database of it.
func postgresDatabase(t *testing.T) string {
	t.Helper()
	srv := pgtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	url, err := srv.Database(ctx, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// postgresConfig is the store block of a config on the database at url.
func postgresConfig(url string) string {
	return fmt.Sprintf("store:\n  engine: postgres\n  postgres:\n    url: %q\n    max_conns: 8\n", url)
}

// iotgate on PostgreSQL: what the REST API creates outlives a restart,
// nothing is kept in data_dir's Badger store, and the node lists itself
// with its sessions.
func TestPostgresStoreSurvivesRestart(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: postgresStore(t)})
	g.CreateProduct("pg", "MQTT")
	dev := g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "meter-1", "product_id": "pg", "device_name": "Meter 1"})
	id := dev["device_id"].(string)

	g.Stop()
	g.Restart()
	got := g.MustDo(200, "GET", g.P("/devices/"+id), nil)
	if got["node_id"] != "meter-1" || got["device_name"] != "Meter 1" {
		t.Fatalf("after a restart: %v", got)
	}
	if _, err := os.Stat(filepath.Join(g.DataDir, "data", "db")); !os.IsNotExist(err) {
		t.Fatalf("data_dir/db exists on the PostgreSQL engine (%v)", err)
	}
	nodes := g.MustDo(200, "GET", g.P("/cluster/nodes"), nil)["nodes"].([]any)
	if len(nodes) != 1 {
		t.Fatalf("nodes %v", nodes)
	}
	n := nodes[0].(map[string]any)
	if devices := n["devices"].(map[string]any); n["node_id"] != "local" || devices["MQTT"] != float64(0) || devices["LwM2M"] != float64(0) {
		t.Fatalf("node %v", n)
	}
}

// A node whose master key is not the one the store's secrets were sealed
// with refuses to start, saying so, and the database is unharmed.
func TestPostgresWrongMasterKeyRefused(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: postgresStore(t)})
	g.CreateProduct("pg", "MQTT")
	dev := g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "meter-1", "product_id": "pg"})
	g.Stop()

	// The same configuration with another key than data_dir/master.key.
	cfg, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "wrong-key.yaml")
	if err := os.WriteFile(wrong, append(cfg, "\nmaster_key: \""+strings.Repeat("0f", 32)+"\"\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary(t), "-config", wrong).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("iotgate with a wrong master key still running after 1 min:\n%s", out)
	}
	if err == nil || !strings.Contains(string(out), "the master key differs from the one the store's secrets were sealed with") {
		t.Fatalf("iotgate with a wrong master key: %v, want a refusal naming the master key:\n%s", err, out)
	}

	g.Restart()
	g.MustDo(200, "GET", g.P("/devices/"+dev["device_id"].(string)), nil)
}
