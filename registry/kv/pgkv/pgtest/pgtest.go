// Package pgtest starts PostgreSQL servers for tests: Debian's postgresql
// package (initdb, postgres), each server in a temporary data directory
// of its own, on a free loopback port, with fsync on. It is imported by
// the tests of the PostgreSQL engine (registry/kv/pgkv), of the binary
// and of the end-to-end suite; nothing else may import it.
//
// The postmaster is a child of the test process and gets SIGINT (a fast
// shutdown) if the test process dies, so a test killed by its timeout
// leaves no server behind; otherwise it is stopped by its PID. As root,
// the server runs as the postgres OS user (PostgreSQL refuses to run as
// root). Where PostgreSQL is not installed, tests skip with a message
// saying so, except under CI=true, where they fail (.ci/packages lists
// postgresql).
package pgtest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ErrNotInstalled is New's error when there is no PostgreSQL to start:
// Need makes the test skip (fail under CI) rather than report it.
var ErrNotInstalled = errors.New("PostgreSQL's initdb and postgres are not installed (install Debian's postgresql package; CI lists it in .ci/packages)")

// StopMode is how Stop ends the server.
type StopMode int

const (
	// Fast is SIGINT: clients are disconnected, then a checkpoint.
	Fast StopMode = iota
	// Immediate is SIGQUIT: a crash, no checkpoint; the next start
	// recovers from the WAL (nothing fsynced is lost).
	Immediate
)

// Server is a PostgreSQL server started for tests. Its superuser is
// postgres, trusted without a password on 127.0.0.1.
type Server struct {
	bin  string // the directory holding initdb and postgres
	dir  string // temp dir: data/, the socket, the log
	port int
	// cred is the OS user the server runs as (nil: the current one).
	cred   *syscall.Credential
	cmd    *exec.Cmd     // the running postmaster; nil when stopped
	exited chan struct{} // closed when it has exited
}

// Start starts a server for t alone, removed when t ends. Without
// PostgreSQL it skips t (fails it under CI=true).
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	Need(t, err)
	t.Cleanup(s.Remove)
	return s
}

// Need skips t when err is ErrNotInstalled, except under CI=true where
// it fails t, and fails t on any other error.
func Need(t testing.TB, err error) {
	t.Helper()
	switch {
	case err == nil:
	case errors.Is(err, ErrNotInstalled):
		if ci := os.Getenv("CI"); ci != "" {
			t.Fatalf("CI=%s and no PostgreSQL to test against: %v", ci, err)
		}
		t.Skipf("no PostgreSQL to test against: %v", err)
	default:
		t.Fatalf("starting PostgreSQL: %v", err)
	}
}

// New initialises a fresh server and starts it: for a server a package's
// tests share (started in TestMain). The caller must Remove it.
func New() (*Server, error) {
	bin, err := findPostgres()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, and there is no postgres user to run PostgreSQL as: %w", ErrNotInstalled)
		}
		uid, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		if err := os.Chown(dir, int(uid), int(gid)); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	}
	initdb := s.command("initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}
	if err := s.start(0); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// findPostgres returns the directory of PostgreSQL's server binaries:
// initdb's on the PATH, else Debian's newest.
func findPostgres() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) }) // newest first
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrNotInstalled
}

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

func (s *Server) data() string { return filepath.Join(s.dir, "data") }

// Port is the server's TCP port on 127.0.0.1.
func (s *Server) Port() int { return s.port }

// URL is the connection string of database db on the server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Database creates (if absent) a database named after seed and returns
// its URL: the same seed names the same database, so a test that reopens
// a directory reopens its database, and different seeds never share one.
func (s *Server) Database(ctx context.Context, seed string) (string, error) {
	sum := sha256.Sum256([]byte(seed))
	name := "kv_" + hex.EncodeToString(sum[:8])
	conn, err := pgx.Connect(ctx, s.URL("postgres"))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	// name is hex: nothing to quote.
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	var pe *pgconn.PgError
	if err != nil && !(errors.As(err, &pe) && pe.Code == "42P04") { // duplicate_database
		return "", fmt.Errorf("create database: %w", err)
	}
	return s.URL(name), nil
}

// start starts the postmaster on a loopback port: the given one, or a
// free one when port is 0; it returns once a connection succeeds.
func (s *Server) start(port int) error {
	if port == 0 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	s.port = port
	logf, err := os.OpenFile(filepath.Join(s.dir, "log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child has its own copy
	cmd := s.command("postgres", "-D", s.data(), "-p", strconv.Itoa(port),
		"-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories="+s.dir,
		"-c", "fsync=on", "-c", "synchronous_commit=on", "-c", "max_connections=300")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start postgres: %w", err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { _ = cmd.Wait(); close(exited) }(s.exited)
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.URL("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-s.exited:
			s.cmd = nil
			return fmt.Errorf("postgres exited: %v\n%s", err, s.Log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.Stop(Immediate)
			return fmt.Errorf("postgres not ready after 60 s: %v\n%s", err, s.Log())
		}
	}
}

// Restart starts the stopped server again on the same port and data.
func (s *Server) Restart() error {
	if s.cmd != nil {
		return errors.New("pgtest: Restart of a running server")
	}
	return s.start(s.port)
}

// Stop stops the server by signalling its PID, and waits for it to exit
// (killing it after 60 s). Stopping a stopped server does nothing.
func (s *Server) Stop(mode StopMode) error {
	if s.cmd == nil {
		return nil
	}
	sig := syscall.SIGINT
	if mode == Immediate {
		sig = syscall.SIGQUIT
	}
	_ = s.cmd.Process.Signal(sig)
	defer func() { s.cmd = nil }()
	select {
	case <-s.exited:
		return nil
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("postgres did not stop (mode %d) within 60 s", mode)
	}
}

// Remove stops the server and deletes its directory.
func (s *Server) Remove() {
	_ = s.Stop(Fast)
	os.RemoveAll(s.dir)
}

// command runs one of PostgreSQL's programs as the server's user, sent
// SIGINT if the test process dies.
func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGINT}
	return cmd
}

// Log is what the server has logged so far.
func (s *Server) Log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	return string(b)
}
