// Package natstest starts real NATS servers (Debian's nats-server) for
// tests: one, or a cluster of routed ones, each on free loopback ports
// in a directory of its own, killed when the test ends.
//
// Without nats-server the tests skip, except when CI is set (CI=true),
// where they fail: CI installs it (.ci/packages).
package natstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one nats-server process.
type Server struct {
	t       testing.TB
	bin     string
	dir     string
	name    string
	port    int // clients
	http    int // monitoring, for readiness
	cluster *cluster
	// jetstream: started with JetStream on (-js), its store in dir.
	jetstream bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// cluster is the servers started together, routed to each other.
type cluster struct {
	ports   []int // route ports, by member
	members []*Server
}

// ErrNotInstalled makes Start skip (or fail under CI).
var ErrNotInstalled = errors.New("nats-server is not installed (install Debian's nats-server package; CI lists it in .ci/packages)")

// Binary returns the path of nats-server: from PATH, else /usr/sbin.
func Binary() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	if _, err := os.Stat("/usr/sbin/nats-server"); err == nil {
		return "/usr/sbin/nats-server", nil
	}
	return "", ErrNotInstalled
}

func need(t testing.TB) string {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		if ci := os.Getenv("CI"); ci != "" {
			t.Fatalf("CI=%s and no NATS server to test against: %v", ci, err)
		}
		t.Skipf("no NATS server to test against: %v", err)
	}
	return bin
}

// Start starts one nats-server on a free loopback port.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartCluster(t, 1)[0]
}

// StartJetStream starts one nats-server with JetStream enabled, its
// storage in the server's directory.
func StartJetStream(t testing.TB) *Server {
	t.Helper()
	bin := need(t)
	ports := portPicker{}
	s := &Server{t: t, bin: bin, dir: t.TempDir(), name: "natstest-js", port: ports.free(t), http: ports.free(t), jetstream: true}
	t.Cleanup(s.kill)
	s.start()
	s.waitReady(0)
	return s
}

// StartCluster starts n nats-servers routed as one cluster and waits
// until every route is up.
func StartCluster(t testing.TB, n int) []*Server {
	t.Helper()
	bin := need(t)
	if n < 1 {
		t.Fatalf("natstest: a cluster of %d servers", n)
	}
	var c *cluster
	if n > 1 {
		c = &cluster{}
	}
	servers := make([]*Server, n)
	ports := portPicker{}
	for i := range servers {
		s := &Server{t: t, bin: bin, dir: t.TempDir(), name: fmt.Sprintf("natstest-%d", i+1),
			port: ports.free(t), http: ports.free(t), cluster: c}
		if c != nil {
			c.ports = append(c.ports, ports.free(t))
			c.members = append(c.members, s)
		}
		servers[i] = s
		t.Cleanup(s.kill)
	}
	for _, s := range servers {
		s.start()
	}
	for _, s := range servers {
		s.waitReady(n - 1)
	}
	return servers
}

// URLs joins the servers' client URLs with commas, as nats.go takes
// them.
func URLs(servers []*Server) string {
	urls := make([]string, len(servers))
	for i, s := range servers {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// URL is the server's client URL.
func (s *Server) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", s.port) }

// Stop stops the server (SIGTERM: its clients are disconnected at once)
// and waits for it to exit.
func (s *Server) Stop() {
	s.t.Helper()
	s.signal(syscall.SIGTERM)
}

// Kill kills the server (SIGKILL: a crash) and waits for it to exit.
func (s *Server) Kill() {
	s.t.Helper()
	s.signal(syscall.SIGKILL)
}

// Restart starts a stopped server again on the same ports and waits
// until it serves and (in a cluster) has routes to every running member.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	running := s.cmd != nil
	s.mu.Unlock()
	if running {
		s.t.Fatalf("natstest: restart of %s, which is running", s.name)
	}
	s.start()
	routes := 0
	if s.cluster != nil {
		for _, m := range s.cluster.members {
			if m != s && m.running() {
				routes++
			}
		}
	}
	s.waitReady(routes)
}

func (s *Server) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cmd != nil
}

func (s *Server) start() {
	s.t.Helper()
	args := []string{"-a", "127.0.0.1", "-p", strconv.Itoa(s.port), "-m", strconv.Itoa(s.http),
		"-n", s.name, "-l", filepath.Join(s.dir, "log")}
	if s.jetstream {
		args = append(args, "-js", "-sd", filepath.Join(s.dir, "js"))
	}
	if c := s.cluster; c != nil {
		var routes []string
		for i, m := range c.members {
			if m == s {
				args = append(args, "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", c.ports[i]))
			} else {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", c.ports[i]))
			}
		}
		args = append(args, "--cluster_name", "natstest", "--routes", strings.Join(routes, ","))
	}
	cmd := exec.Command(s.bin, args...)
	cmd.Dir = s.dir
	// Killed with the test process, should it die before its cleanups.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("natstest: start nats-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
}

// waitReady waits until the server accepts clients and has routes to
// that many other servers.
func (s *Server) waitReady(routes int) {
	s.t.Helper()
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	deadline := time.Now().Add(20 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		err := s.ready(client, routes)
		if err == nil {
			return
		}
		select {
		case <-exited:
			s.t.Fatalf("natstest: %s exited: %v\n%s", s.name, err, s.log())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("natstest: %s not ready after 20 s: %v\n%s", s.name, err, s.log())
		}
	}
}

func (s *Server) ready(client *http.Client, routes int) error {
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", s.port), time.Second)
	if err != nil {
		return err
	}
	conn.Close()
	if routes == 0 {
		return nil
	}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/routez", s.http))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var rz struct {
		NumRoutes int `json:"num_routes"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&rz); err != nil {
		return fmt.Errorf("routez: %w", err)
	}
	if rz.NumRoutes < routes {
		return fmt.Errorf("%d routes of %d", rz.NumRoutes, routes)
	}
	return nil
}

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
		s.t.Errorf("natstest: %s did not exit on %v within 10 s", s.name, sig)
	}
}

// kill ends the server at cleanup, by its PID.
func (s *Server) kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		<-exited
	}
}

func (s *Server) log() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "log"))
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return string(b)
}

// portPicker hands out loopback TCP ports for the servers one start
// launches, never the same one twice: the ports are all picked before any
// server binds them, so a check that a port is free cannot see an
// earlier pick (a cluster's client and route ports once collided).
type portPicker map[int]bool

// free returns a loopback TCP port that was free a moment ago and that
// pp has not handed out.
func (pp portPicker) free(t testing.TB) int {
	t.Helper()
	// Below Linux's ephemeral range (32768-60999): a port the kernel
	// hands out for port 0 may be handed to another test's outgoing
	// connection between this check and nats-server's bind.
	for range 100 {
		p := 10000 + rand.N(22000)
		if pp[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err == nil {
			l.Close()
			pp[p] = true
			return p
		}
	}
	t.Fatal("natstest: no free port in 10000-31999")
	return 0
}

// ClientMessages is how many messages the server has received from its
// client connections (not from its routes): summed over a cluster's
// servers, what the clients published.
func (s *Server) ClientMessages() (uint64, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/connz?limit=100000", s.http))
	if err != nil {
		return 0, fmt.Errorf("natstest: connz of %s: %w", s.name, err)
	}
	defer resp.Body.Close()
	var cz struct {
		Connections []struct {
			InMsgs uint64 `json:"in_msgs"`
		} `json:"connections"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&cz); err != nil {
		return 0, fmt.Errorf("natstest: connz of %s: %w", s.name, err)
	}
	var n uint64
	for _, c := range cz.Connections {
		n += c.InMsgs
	}
	return n, nil
}
