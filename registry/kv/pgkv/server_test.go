package pgkv_test

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

// pgServer is a PostgreSQL server the tests start on a loopback port, in
// a data directory of their own, with fsync on. The postmaster is a child
// of the test process and gets SIGINT (a fast shutdown) if the test
// process dies, so a test killed by its timeout leaves no server behind.
type pgServer struct {
	bin  string // the directory holding initdb and postgres
	dir  string // temp dir: data/, the socket, the log
	port int
	// cred is the OS user the server runs as (nil: the current one):
	// PostgreSQL refuses to run as root.
	cred   *syscall.Credential
	cmd    *exec.Cmd     // the running postmaster
	exited chan struct{} // closed when it has exited
}

// findPostgres returns the directory of PostgreSQL's server binaries, or
// why there is none.
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
	return "", errNotInstalled
}

// errNotInstalled makes the tests skip rather than fail.
var errNotInstalled = errors.New("PostgreSQL's initdb and postgres are not installed (install Debian's postgresql package; CI lists it in .ci/packages)")

func version(binDir string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return n
}

// startPostgres initialises a fresh cluster and starts it.
func startPostgres() (*pgServer, error) {
	bin, err := findPostgres()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgkv-test-")
	if err != nil {
		return nil, err
	}
	s := &pgServer{bin: bin, dir: dir}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root, and there is no postgres user to run PostgreSQL as: %w", errNotInstalled)
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

func (s *pgServer) data() string { return filepath.Join(s.dir, "data") }

// start starts the server on a loopback port: the given one, or a free
// one when port is 0.
func (s *pgServer) start(port int) error {
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
	// Ready once it accepts a connection.
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		conn, err := pgx.Connect(ctx, s.url("postgres"))
		cancel()
		if err == nil {
			conn.Close(context.Background())
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("postgres exited: %v\n%s", err, s.log())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			_ = s.stop("immediate")
			return fmt.Errorf("postgres not ready after 60 s: %v\n%s", err, s.log())
		}
	}
}

// stop stops the server: "fast" (SIGINT: clients disconnected, then a
// checkpoint) or "immediate" (SIGQUIT: a crash, no checkpoint; the next
// start recovers from the WAL).
func (s *pgServer) stop(mode string) error {
	if s.cmd == nil {
		return nil
	}
	sig := syscall.SIGINT
	if mode == "immediate" {
		sig = syscall.SIGQUIT
	}
	_ = s.cmd.Process.Signal(sig)
	select {
	case <-s.exited:
	case <-time.After(60 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("postgres did not stop (%s) within 60 s", mode)
	}
	s.cmd = nil
	return nil
}

func (s *pgServer) remove() {
	_ = s.stop("fast")
	os.RemoveAll(s.dir)
}

// command runs one of PostgreSQL's programs as the server's user, killed
// if the test process dies.
func (s *pgServer) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(s.bin, name), args...)
	cmd.Dir = s.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred, Pdeathsig: syscall.SIGINT}
	return cmd
}

func (s *pgServer) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	return string(b)
}

// url is the connection string of a database on the server.
func (s *pgServer) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// database creates (if absent) the database that belongs to dir and
// returns its URL: each conformance check has its own empty store, and
// reopening a dir reopens its database.
func (s *pgServer) database(ctx context.Context, dir string) (string, error) {
	sum := sha256.Sum256([]byte(dir))
	name := "kv_" + hex.EncodeToString(sum[:8])
	conn, err := pgx.Connect(ctx, s.url("postgres"))
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
	return s.url(name), nil
}

// server is the PostgreSQL every test of this binary shares (nil when
// PostgreSQL is not installed; serverErr says why).
var (
	server    *pgServer
	serverErr error
)

func TestMain(m *testing.M) {
	server, serverErr = startPostgres()
	code := m.Run()
	if server != nil {
		server.remove()
	}
	os.Exit(code)
}

// needServer skips the test when PostgreSQL is not installed, except
// under CI=true, where it must be (.ci/packages lists it).
func needServer(t testing.TB) *pgServer {
	t.Helper()
	if errors.Is(serverErr, errNotInstalled) {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI=%s and no PostgreSQL to test against: %v", os.Getenv("CI"), serverErr)
		}
		t.Skipf("no PostgreSQL to test against: %v", serverErr)
	}
	if serverErr != nil {
		t.Fatalf("starting PostgreSQL: %v", serverErr)
	}
	return server
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
