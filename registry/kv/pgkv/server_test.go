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
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// pgServer is a PostgreSQL server the tests start on a loopback port, in
// a data directory of their own, with fsync on.
type pgServer struct {
	bin  string // the directory holding initdb, pg_ctl, postgres
	dir  string // temp dir: data/, the socket, the log
	port int
	// runAs is the OS user the server runs as ("" for the current one):
	// PostgreSQL refuses to run as root.
	runAs string
}

// findPostgres returns the directory of PostgreSQL's server binaries, or
// why there is none.
func findPostgres() (string, error) {
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			p = real
		}
		return filepath.Dir(p), nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { return version(b) - version(a) }) // newest first
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d, nil
		}
	}
	return "", errNotInstalled
}

// errNotInstalled makes the tests skip rather than fail.
var errNotInstalled = errors.New("PostgreSQL's initdb/pg_ctl are not installed (install Debian's postgresql package; CI lists it in .ci/packages)")

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
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		s.runAs = "postgres"
	}
	if err := s.run("initdb", "-D", s.data(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"); err != nil {
		os.RemoveAll(dir)
		return nil, err
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
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories=%s -c fsync=on -c synchronous_commit=on -c max_connections=300", s.port, s.dir)
	return s.run("pg_ctl", "-D", s.data(), "-l", filepath.Join(s.dir, "log"), "-w", "-t", "60", "-o", opts, "start")
}

// stop stops the server; mode "immediate" is a crash (no checkpoint).
func (s *pgServer) stop(mode string) error {
	return s.run("pg_ctl", "-D", s.data(), "-w", "-m", mode, "stop")
}

func (s *pgServer) remove() {
	_ = s.stop("fast")
	os.RemoveAll(s.dir)
}

func (s *pgServer) run(name string, args ...string) error {
	path := filepath.Join(s.bin, name)
	var cmd *exec.Cmd
	if s.runAs != "" {
		cmd = exec.Command("runuser", append([]string{"-u", s.runAs, "--", path}, args...)...)
	} else {
		cmd = exec.Command(path, args...)
	}
	cmd.Dir = s.dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(filepath.Join(s.dir, "log"))
		return fmt.Errorf("%s %v: %w\n%s\n%s", name, args, err, out, log)
	}
	return nil
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

// needServer skips the test when PostgreSQL is not available.
func needServer(t testing.TB) *pgServer {
	t.Helper()
	if errors.Is(serverErr, errNotInstalled) {
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
