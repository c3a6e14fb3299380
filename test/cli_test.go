package test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cliResult is what a finished iotgate command printed and its status.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runCLI runs the binary to completion (30 s at most).
func runCLI(t *testing.T, args ...string) cliResult {
	t.Helper()
	return runCLIFor(t, 30*time.Second, args...)
}

// cliConfig writes a configuration on free loopback ports with its data
// directory (not made) under a temporary directory, plus extra YAML, and
// returns its path, the data directory and the API address.
func cliConfig(t *testing.T, extra string) (path, dataDir, api string) {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, "tcp", "tcp", "udp", "udp")
	dataDir = filepath.Join(dir, "data")
	path = filepath.Join(dir, "iotgate.yaml")
	cfg := fmt.Sprintf("data_dir: %q\napi:\n  listen: %q\n  tls_listen: \"\"\nmqtt:\n  listen: %q\n  tls_listen: \"\"\n"+
		"coap:\n  listen: %q\n  dtls_listen: %q\nstore:\n  min_free_bytes: 16777216\n  ballast_bytes: 1048576\n%s",
		dataDir, ports[0], ports[1], ports[2], ports[3], extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path, dataDir, ports[0]
}

// oneLine checks that s is exactly one line holding every want.
func oneLine(t *testing.T, what, s string, want ...string) {
	t.Helper()
	if strings.Count(s, "\n") != 1 || !strings.HasSuffix(s, "\n") {
		t.Errorf("%s: want one line, got %q", what, s)
	}
	for _, w := range want {
		if !strings.Contains(s, w) {
			t.Errorf("%s: %q lacks %q", what, s, w)
		}
	}
}

func mustNotExist(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (or cannot be checked: %v): the command wrote to the data directory", path, err)
	}
}

func TestVersionCommand(t *testing.T) {
	r := runCLI(t, "version")
	oneLine(t, "version", r.stdout, "iotgate ", " commit ", runtime.Version())
	if r.code != 0 || r.stderr != "" {
		t.Errorf("version: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := runCLI(t, "versio"); r.code != 2 {
		t.Errorf("an unknown command: exit %d, want 2", r.code)
	} else {
		oneLine(t, "unknown command", r.stderr, `unknown command "versio"`, "serve, check, version, health, backup, restore")
	}
}

// Both spellings of the server start it.
func TestServeCommand(t *testing.T) {
	for _, args := range [][]string{{"serve", "-config"}, {"-config"}} {
		path, _, api := cliConfig(t, "")
		cmd := exec.Command(binary(t), append(args, path)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		healthy := false
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline) && !healthy; time.Sleep(50 * time.Millisecond) {
			if resp, err := http.Get("http://" + api + "/healthz"); err == nil {
				resp.Body.Close()
				healthy = resp.StatusCode == http.StatusOK
			}
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		err := cmd.Wait()
		if !healthy || err != nil {
			t.Errorf("iotgate %s: healthy %t, exit %v; output:\n%s", strings.Join(args, " "), healthy, err, out.String())
		}
	}
}

// A typo in the configuration: one line naming the file, the key, its
// line and the key meant; nothing written; exit status 2. The same from
// check.
func TestConfigTypoRefused(t *testing.T) {
	path, dataDir, _ := cliConfig(t, "limits:\n  mqtt:\n    max_pending: 10\n    connect_rte: 5\n")
	for _, args := range [][]string{{"-config", path}, {"check", "-config", path}} {
		r := runCLI(t, args...)
		if r.code != 2 {
			t.Errorf("iotgate %s: exit %d, want 2", strings.Join(args, " "), r.code)
		}
		oneLine(t, strings.Join(args, " "), r.stderr, "config "+path+": limits.mqtt.connect_rte (line 17): unknown key; did you mean connect_rate?")
		if strings.Contains(r.stderr, "main.") {
			t.Errorf("the error names a Go type: %q", r.stderr)
		}
		mustNotExist(t, dataDir)
	}
}

// A busy port is found before anything is generated or written: no
// credentials printed, no data directory, one line naming the key.
func TestBusyPortFoundFirst(t *testing.T) {
	path, dataDir, api := cliConfig(t, "")
	l, err := net.Listen("tcp", api)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	start := time.Now()
	r := runCLI(t, "-config", path)
	if r.code == 0 {
		t.Fatal("iotgate started on a busy port")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the refusal took %v", took)
	}
	oneLine(t, "busy port", r.stderr, "config "+path+": api.listen", api, "address already in use")
	if r.stdout != "" || strings.Contains(r.stderr, "credentials") {
		t.Errorf("something was printed besides the error: stdout %q stderr %q", r.stdout, r.stderr)
	}
	mustNotExist(t, dataDir)

	// check reports it too (a problem: exit 1), and writes nothing.
	c := runCLI(t, "check", "-config", path)
	if c.code != 1 || !strings.Contains(c.stdout, "listen addresses: config: api.listen") {
		t.Errorf("check with a busy port: exit %d\n%s%s", c.code, c.stdout, c.stderr)
	}
	mustNotExist(t, dataDir)
}

// check on a configuration never started: every check passes, nothing is
// made; on a stopped gate's store: consistent, and its files unchanged.
func TestCheckChangesNothing(t *testing.T) {
	path, dataDir, _ := cliConfig(t, "")
	r := runCLI(t, "check", "-config", path)
	if r.code != 0 {
		t.Fatalf("check of a fresh configuration: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"configuration: ok", "listen addresses: ok", "certificate files: ok", "master key: ok", "store: none yet"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, r.stdout)
		}
	}
	mustNotExist(t, dataDir)

	g := StartGate(t, GateOptions{})
	g.CreateProduct("chk", "MQTT")
	for i := range 5 {
		g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprint("n", i), "product_id": "chk"})
	}
	// Running: the ports are taken and the store is locked.
	if r := runCLI(t, "-config", g.Config, "check"); r.code != 1 || !strings.Contains(r.stdout, "address already in use") {
		t.Errorf("check of a running gate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	g.Stop()
	before := tree(t, g.DataDir)
	r = runCLI(t, "-config", g.Config, "check")
	if r.code != 0 || !strings.Contains(r.stdout, "the store is consistent") {
		t.Fatalf("check of a stopped gate: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if after := tree(t, g.DataDir); after != before {
		t.Errorf("check changed the data directory:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// tree lists dir's files with their sizes and modification times.
func tree(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %d %s\n", p, fi.Size(), fi.ModTime().Format(time.RFC3339Nano))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// runCLIFor runs the binary to completion, limit at most.
func runCLIFor(t *testing.T, limit time.Duration, args ...string) cliResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary(t), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var exit *exec.ExitError
	code := 0
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("iotgate %s: %v", strings.Join(args, " "), err)
	}
	return cliResult{stdout.String(), stderr.String(), code}
}
