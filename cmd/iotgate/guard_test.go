package main

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// A single node keeps its ban list in memory and writes nothing to the
// store; a node of a cluster shares it through the store, and loads it
// before serving (a restarted node enforces the cluster's bans at once).
func TestGuardPerNode(t *testing.T) {
	ctx := context.Background()
	s, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	reg, err := registry.New(registry.Options{Store: s, MasterKey: bytes.Repeat([]byte{1}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	wiringFor := func(node string) *wiring {
		cfg := defaultConfig()
		cfg.Cluster.NodeID = node
		return &wiring{cfg: &cfg, log: slog.New(slog.DiscardHandler), reg: reg}
	}

	single := wiringFor("")
	single.guard = single.newGuard()
	if _, ok := single.guard.(*guard.Local); !ok {
		t.Fatalf("single node guard %T, want *guard.Local", single.guard)
	}
	if err := single.guard.Ban(ctx, guard.Ban{Target: guard.Target{Identity: "alone"}}); err != nil {
		t.Fatal(err)
	}
	if bans, err := reg.ListBans(ctx); err != nil || len(bans) != 0 {
		t.Fatalf("a single node's ban reached the store: %+v %v", bans, err)
	}
	single.shareBans(ctx)() // nothing to run

	now := time.Now()
	if err := reg.PutBan(ctx, guard.Ban{Target: guard.Target{Identity: "earlier"}, Source: guard.SourceManual, Created: now}); err != nil {
		t.Fatal(err)
	}
	clustered := wiringFor("node-1")
	clustered.guard = clustered.newGuard()
	if _, ok := clustered.guard.(*guard.Shared); !ok {
		t.Fatalf("clustered guard %T, want *guard.Shared", clustered.guard)
	}
	runCtx, stop := context.WithCancel(ctx)
	wait := clustered.shareBans(runCtx)
	if !clustered.guard.IdentityBanned("earlier") {
		t.Fatal("a clustered node did not load the stored bans before serving")
	}
	if err := clustered.guard.Ban(ctx, guard.Ban{Target: guard.Target{Identity: "shared"}}); err != nil {
		t.Fatal(err)
	}
	if bans, err := reg.ListBans(ctx); err != nil || len(bans) != 2 {
		t.Fatalf("stored bans %+v %v, want the earlier and the new one", bans, err)
	}
	stop()
	wait()
}
