package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/iotgate/iotgate/registry"
)

// check opens the store of the configuration at path (with Badger the
// platform must be stopped: the store is locked while it runs; the check
// reads one snapshot, so a PostgreSQL store may be live) and reports whether its
// records, indexes and counters agree, printing each disagreement to out.
func check(path string, out io.Writer) (bool, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return false, err
	}
	key, err := masterKey(&cfg)
	if err != nil {
		return false, err
	}
	sc := cfg.Store
	sc.MinFreeBytes = -1 // a check only reads
	store, err := openStore(context.Background(), sc, cfg.DataDir, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return false, fmt.Errorf("open the store (is iotgate still running?): %w", err)
	}
	defer store.Close()
	reg, err := registry.New(registry.Options{Store: store, MasterKey: key})
	if err != nil {
		return false, err
	}
	defer reg.Close()
	problems, err := reg.Check(context.Background())
	if err != nil {
		return false, fmt.Errorf("check: %w", err)
	}
	for _, p := range problems {
		fmt.Fprintln(out, p)
	}
	if len(problems) == 0 {
		fmt.Fprintln(out, "the store is consistent")
	}
	return len(problems) == 0, nil
}
