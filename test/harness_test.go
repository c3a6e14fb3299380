// Package test holds end-to-end tests: they build the real iotgate binary,
// start it on free loopback ports with its own data directory, and drive
// it from outside over HTTP, MQTT and CoAP.
package test

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// builtBinary builds one command of this module once per test run.
type builtBinary struct {
	once sync.Once
	path string
	err  error
}

func (b *builtBinary) get(t testing.TB, pkg, name string, race bool) string {
	t.Helper()
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", name+"-bin")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		args := []string{"build", "-o", b.path}
		if race {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, pkg)...).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

var gateBinary builtBinary

// binary builds ./cmd/iotgate once per test run (with -race when the
// tests run with it, so the server is checked too).
func binary(t testing.TB) string {
	t.Helper()
	return gateBinary.get(t, "../cmd/iotgate", "iotgate", raceEnabled)
}

// Gate is a running iotgate process.
type Gate struct {
	t       testing.TB
	DataDir string
	Config  string
	API     string // http://127.0.0.1:port
	APIS    string // https://localhost:port (the generated certificate's name)
	MQTT    string // 127.0.0.1:port
	MQTTS   string
	CoAP    string
	DTLS    string
	Project string
	Token   string
	AK, SK  string
	// ExtraAddr is the address GateOptions.ExtraAddr was given.
	ExtraAddr string

	cmd    *exec.Cmd
	nofile int // GateOptions.NoFile
	logs   *bytes.Buffer
	mu     *sync.Mutex
	api    *apiCheck // checks REST traffic against /openapi.json (apispec_test.go)
}

// GateOptions tweak a started gate.
type GateOptions struct {
	DataDir string // reuse a data dir (restart tests)
	Extra   string // YAML appended to the generated config
	// APILimits are the lines of the config's limits.api block. Empty:
	// noRateLimits, since the tests call as fast as they can, with one
	// credential, from one address.
	APILimits string
	// Limits are further lines of the config's limits block (the
	// guard's, limits.mqtt); empty: the defaults.
	Limits   string
	LogLevel string // default debug
	// ExtraAddr, when set, is configuration appended to Extra that needs
	// one more free loopback TCP address (Gate.ExtraAddr), picked with
	// the gate's own.
	ExtraAddr func(addr string) string
	// NoFile, when set, starts the process with RLIMIT_NOFILE at it
	// (soft and hard, through util-linux's prlimit), on every start.
	NoFile int
}

// noRateLimits switches the REST API's rate limits off (its timeouts and
// caps keep their defaults).
const noRateLimits = "rate: 0\nunauthenticated_rate: 0\n"

// freePorts returns a free loopback address for each network ("tcp" or
// "udp"). All are held open until every one is chosen, so one call never
// returns the same port twice (the kernel may hand a port just closed to
// the next request).
func freePorts(t testing.TB, networks ...string) []string {
	t.Helper()
	addrs := make([]string, len(networks))
	for i, network := range networks {
		var c io.Closer
		if network == "udp" {
			pc, err := net.ListenPacket("udp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c, addrs[i] = pc, pc.LocalAddr().String()
		} else {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			c, addrs[i] = l, l.Addr().String()
		}
		defer c.Close()
	}
	return addrs
}

// StartGate starts iotgate and waits until /healthz answers 200.
func StartGate(t testing.TB, o GateOptions) *Gate {
	t.Helper()
	for attempt := 1; ; attempt++ {
		g, busy := tryStartGate(t, o)
		if g != nil {
			return g
		}
		if !busy || attempt == 5 {
			t.Fatalf("iotgate did not start (attempt %d)", attempt)
		}
	}
}

// tryStartGate starts iotgate on free ports. When a port was taken between
// its pick and the bind (the kernel hands the same ephemeral range to
// outgoing connections), it returns nil and true, and the caller picks
// again.
func tryStartGate(t testing.TB, o GateOptions) (*Gate, bool) {
	t.Helper()
	g := &Gate{t: t, DataDir: o.DataDir, nofile: o.NoFile, logs: &bytes.Buffer{}, mu: &sync.Mutex{},
		Project: "proj1", Token: "token-proj1-0123456789", AK: "AKPROJ1EXAMPLE000001", SK: "SKproj1secret0000000000000000000000000001"}
	if g.DataDir == "" {
		g.DataDir = t.TempDir()
	}
	ports := freePorts(t, "tcp", "tcp", "tcp", "udp", "udp", "tcp", "tcp")
	g.API = "http://" + ports[0]
	g.MQTT, g.MQTTS, g.CoAP, g.DTLS = ports[1], ports[2], ports[3], ports[4]
	g.APIS = "https://localhost:" + strings.TrimPrefix(ports[5], "127.0.0.1:")
	extra := o.Extra
	if o.ExtraAddr != nil {
		g.ExtraAddr = ports[6]
		extra += o.ExtraAddr(ports[6])
	}
	g.Config = filepath.Join(g.DataDir, "iotgate.yaml")
	if o.LogLevel == "" {
		o.LogLevel = "debug"
	}
	var limits string
	if o.Limits != "" {
		limits = indent(o.Limits, "  ")
	}
	cfg := fmt.Sprintf(`data_dir: %q
log_level: %s
api:
  listen: %q
  tls_listen: %q
  credentials:
    - project_id: %s
      access_key: %s
      secret_key: %s
      token: %s
    - project_id: proj2
      token: token-proj2-0123456789
coap:
  listen: %q
  dtls_listen: %q
mqtt:
  listen: %q
  tls_listen: %q
limits:
%s  api:
%s%s%s`, filepath.Join(g.DataDir, "data"), o.LogLevel, strings.TrimPrefix(g.API, "http://"), ports[5], g.Project, g.AK, g.SK, g.Token,
		g.CoAP, g.DTLS, g.MQTT, g.MQTTS, limits, indent(cmp.Or(o.APILimits, noRateLimits), "    "),
		testStore(extra), extra)
	if err := os.WriteFile(g.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if busy := g.launch(); busy {
		t.Logf("iotgate found a port taken; picking others:\n%s", lastLines(g.Logs(), 3))
		return nil, true
	}
	t.Cleanup(func() { g.Stop() })
	g.api = newAPICheck(t, g.API)
	return g, false
}

// testStore keeps the store's free-space reserve small, so the tests run
// on a machine with little disk left, unless extra configures the store.
func testStore(extra string) string {
	if strings.HasPrefix(extra, "store:") || strings.Contains(extra, "\nstore:") {
		return ""
	}
	return "store:\n  min_free_bytes: 16777216\n  ballast_bytes: 1048576\n"
}

func (g *Gate) start() {
	g.t.Helper()
	if g.launch() {
		g.t.Fatalf("iotgate could not bind its ports; logs:\n%s", g.Logs())
	}
}

// launch starts the process and waits until /healthz answers 200. It
// returns true, with the process gone, when a listener found its address
// taken; any other failure to start fails the test.
func (g *Gate) launch() (busy bool) {
	g.t.Helper()
	g.cmd = exec.Command(binary(g.t), "-config", g.Config)
	if g.nofile > 0 {
		// prlimit execs the binary: the process and its pid are iotgate's.
		g.cmd = exec.Command("prlimit", fmt.Sprintf("--nofile=%d:%d", g.nofile, g.nofile), "--", binary(g.t), "-config", g.Config)
	}
	w := &lockedWriter{mu: g.mu, b: g.logs}
	g.cmd.Stdout, g.cmd.Stderr = w, w
	if err := g.cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(g.API + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return false
			}
		}
		if strings.Contains(g.Logs(), "address already in use") {
			g.Kill()
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	g.t.Fatalf("iotgate did not become healthy; logs:\n%s", g.Logs())
	return false
}

// Logs returns what the process printed so far.
func (g *Gate) Logs() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.logs.String()
}

// Stop ends the process with SIGTERM and waits for a clean exit.
func (g *Gate) Stop() {
	if g.cmd == nil || g.cmd.Process == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- g.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil && !strings.Contains(err.Error(), "killed") {
			g.t.Errorf("iotgate exited with %v; logs:\n%s", err, g.Logs())
		}
	case <-time.After(20 * time.Second):
		_ = g.cmd.Process.Kill()
		<-done
		g.t.Errorf("iotgate did not stop within 20 s of SIGTERM")
	}
	g.cmd = nil
}

// Kill ends the process with SIGKILL (crash simulation).
func (g *Gate) Kill() {
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Kill()
	_ = g.cmd.Wait()
	g.cmd = nil
}

// signal sends the running process a signal.
func (g *Gate) signal(sig os.Signal) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(sig); err != nil {
		g.t.Fatal(err)
	}
}

// Restart starts the process again on the same ports and data.
func (g *Gate) Restart() { g.start() }

// Do sends a JSON request with the project's token and decodes the JSON
// answer (nil for an empty body).
func (g *Gate) Do(method, path string, body any) (int, map[string]any) {
	g.t.Helper()
	return g.DoToken(g.Token, method, path, body)
}

// DoToken is Do with another token ("" sends none).
func (g *Gate) DoToken(token, method, path string, body any) (int, map[string]any) {
	g.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			g.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, g.API+path, rd)
	if err != nil {
		g.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := g.HTTP().Do(req)
	if err != nil {
		g.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &out); err != nil {
			g.t.Fatalf("%s %s: answer is not JSON: %q", method, path, raw)
		}
	}
	return resp.StatusCode, out
}

// P prefixes a path with the project's base path.
func (g *Gate) P(path string) string { return "/v5/iot/" + g.Project + path }

// MustDo is Do that fails the test unless the status is want.
func (g *Gate) MustDo(want int, method, path string, body any) map[string]any {
	g.t.Helper()
	st, out := g.Do(method, path, body)
	if st != want {
		g.t.Fatalf("%s %s: status %d, want %d: %v", method, path, st, want, out)
	}
	return out
}

// CreateProduct makes a product with the given protocol type.
func (g *Gate) CreateProduct(id, protocol string) {
	g.t.Helper()
	g.MustDo(201, "POST", g.P("/products"), map[string]any{
		"product_id": id, "name": "Product " + id, "device_type": "Sensor", "protocol_type": protocol,
		"data_format": "json", "service_capabilities": []any{map[string]any{"service_id": "Basic", "service_type": "Basic"}},
	})
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	lines := strings.SplitAfter(strings.TrimSuffix(s, "\n"), "\n")
	return prefix + strings.Join(lines, prefix) + "\n"
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
