package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// adminSocketName is the Unix socket, in data_dir, on which a running
// server answers the operator's commands that need it (iotgate backup).
// Its access is the data directory's: the directory is 0700 and the
// socket 0600, so whoever may read the store's files may use it, and
// nobody else (an API credential is a tenant's, and a backup holds every
// tenant's devices).
const adminSocketName = "admin.sock"

// serveAdmin serves GET /backup on data_dir/admin.sock: a consistent
// backup of the store, taken while the server runs (Badger only).
func serveAdmin(dataDir string, backup func(io.Writer) (int64, error), log *slog.Logger) (*http.Server, error) {
	path := filepath.Join(dataDir, adminSocketName)
	// A socket left by a server that died: the store's lock, taken
	// before this, proves no live server owns it.
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	m := http.NewServeMux()
	m.HandleFunc("GET /backup", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		start := time.Now()
		n, err := backup(w)
		if err != nil {
			// The answer is under way: the client finds the backup cut
			// short by its trailer.
			log.Warn("backup failed", "bytes", n, "err", err)
			return
		}
		log.Info("backup taken", "bytes", n, "took", time.Since(start))
	})
	srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return srv, nil
}

// backupCmd writes a backup of the store of the configuration at path to
// out: through the running server's admin socket, or, with the server
// stopped, from the store opened read-only. The file is written beside
// out and renamed to it once complete and checked; an existing out is
// not overwritten.
func backupCmd(path, out string, stdout io.Writer) error {
	if out == "" {
		return errors.New("backup: -o FILE is required")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	if cfg.Store.Engine != engineBadger {
		return errors.New("backup: store.engine is postgres: back the database up with PostgreSQL's tools (pg_dump)")
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("backup: %s exists; not overwritten", out)
	}
	tmp := out + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer os.Remove(tmp) // once renamed, nothing to remove
	how, err := takeBackup(&cfg, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, out)
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fi, _ := os.Stat(out)
	fmt.Fprintf(stdout, "backup of %s written to %s (%d bytes, %s)\n", cfg.DataDir, out, fi.Size(), how)
	return nil
}

// takeBackup writes the backup to w and says how it was taken; what it
// writes is checked whole (length and checksum) as it goes.
func takeBackup(cfg *Config, w io.Writer) (string, error) {
	sock := filepath.Join(cfg.DataDir, adminSocketName)
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	resp, err := client.Get("http://iotgate/backup")
	switch {
	case err == nil:
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("the server answered %s", resp.Status)
		}
		if err := badgerkv.CheckBackup(io.TeeReader(resp.Body, w)); err != nil {
			return "", fmt.Errorf("from the running server: %w", err)
		}
		return "online, from the running server", nil
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED):
		// No server: the store is read directly.
	default:
		return "", fmt.Errorf("admin socket %s: %w", sock, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "db")); err != nil {
		return "", fmt.Errorf("no store in %s: %w", cfg.DataDir, err)
	}
	sc := cfg.Store
	sc.readOnly = true
	store, err := openStore(context.Background(), sc, cfg.DataDir, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		return "", fmt.Errorf("open the store (the server is not running): %w", err)
	}
	defer store.Close()
	if _, err := store.backup(w); err != nil {
		return "", err
	}
	return "offline, from the stopped server's store", nil
}

// restoreCmd loads the backup in file into the data directory of the
// configuration at path, whose store must not exist yet (or be empty):
// a restore never merges into, or replaces, a store.
func restoreCmd(path, file string, stdout io.Writer) error {
	if file == "" {
		return errors.New("restore: -i FILE is required")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	if cfg.Store.Engine != engineBadger {
		return errors.New("restore: store.engine is postgres: restore the database with PostgreSQL's tools")
	}
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	defer f.Close()
	db := filepath.Join(cfg.DataDir, "db")
	if ents, err := os.ReadDir(db); err == nil && len(ents) > 0 {
		return fmt.Errorf("restore: %s already holds a store; restore into a data directory without one", db)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := badgerkv.Restore(db, f); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s into %s; start iotgate with the master key of the server the backup was taken from\n", file, db)
	return nil
}
