package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// check runs, changing nothing, what a start would check, and prints a
// line for each check to out: the configuration at path (an error: it
// returns it, naming the key and line), that every listen address is
// free, that the certificate files and the master key load, and that
// the store's records, indexes and counters agree. It reports whether
// every check passed.
//
// With Badger the store is opened read-only, which fails while iotgate
// runs (the server holds its directory), and read-write only when a
// crash left its log to be truncated (the repair a start makes); a
// PostgreSQL store is read in one snapshot and may be live. A data directory a start has not yet made
// is left unmade: its store, key and credentials would be created then.
func check(path string, out io.Writer) (bool, error) {
	cfg, err := loadConfig(path)
	if err != nil {
		return false, err
	}
	ok := true
	report := func(what string, err error) bool {
		if err != nil {
			fmt.Fprintf(out, "%s: %v\n", what, err)
			ok = false
			return false
		}
		fmt.Fprintf(out, "%s: ok\n", what)
		return true
	}
	report("configuration", nil)
	report("listen addresses", cfg.checkListen())
	report("certificate files", cfg.checkCertFiles())
	key, err := readMasterKey(&cfg)
	if !report("master key", err) {
		return false, nil
	}
	if cfg.Store.Engine == engineBadger {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, "db")); errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(out, "store: none yet in %s (the first start creates it)\n", cfg.DataDir)
			return ok, nil
		}
	}
	if key == nil {
		report("store", fmt.Errorf("the store exists but no master key was found (master_key, $IOTGATE_MASTER_KEY or %s)",
			filepath.Join(cfg.DataDir, "master.key")))
		return false, nil
	}
	problems, err := checkStore(&cfg, key, out)
	if !report("store", err) {
		return false, nil
	}
	for _, p := range problems {
		fmt.Fprintln(out, "store:", p)
	}
	if len(problems) > 0 {
		return false, nil
	}
	fmt.Fprintln(out, "the store is consistent")
	return ok, nil
}

// readMasterKey is the master key a start would use, read without
// generating one: nil (and no error) when none exists yet.
func readMasterKey(cfg *Config) ([]byte, error) {
	if cfg.MasterKey != "" || os.Getenv("IOTGATE_MASTER_KEY") != "" {
		return masterKey(cfg)
	}
	path := filepath.Join(cfg.DataDir, "master.key")
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read master key: %w", err)
	}
	key, err := registry.ParseMasterKey(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return key, nil
}

// checkStore opens the store read-only and returns the disagreements
// between its records, indexes and counters.
func checkStore(cfg *Config, key []byte, out io.Writer) ([]string, error) {
	sc := cfg.Store
	sc.readOnly = true
	store, err := openStore(context.Background(), sc, cfg.DataDir, slog.New(slog.DiscardHandler), nil)
	if errors.Is(err, badgerkv.ErrRecoveryNeeded) {
		// After a crash Badger must truncate its log to the last whole
		// record before anything reads it: the repair the next start
		// makes anyway, which changes no record.
		fmt.Fprintln(out, "store: the last stop was unclean; opening it read-write once to recover its log, as a start would")
		sc.readOnly, sc.MinFreeBytes = false, -1
		store, err = openStore(context.Background(), sc, cfg.DataDir, slog.New(slog.DiscardHandler), nil)
	}
	if err != nil {
		return nil, fmt.Errorf("open (is iotgate still running?): %w", err)
	}
	defer store.Close()
	reg, err := registry.New(registry.Options{Store: store, MasterKey: key})
	if err != nil {
		return nil, err
	}
	defer reg.Close()
	problems, err := reg.Check(context.Background())
	if err != nil {
		return nil, fmt.Errorf("check: %w", err)
	}
	lines := make([]string, len(problems))
	for i, p := range problems {
		lines[i] = fmt.Sprint(p)
	}
	return lines, nil
}
