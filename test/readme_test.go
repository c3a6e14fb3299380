package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The README test: README.md's walk-through must run as written.
//
// Which blocks: a fenced ```sh block right after the line
// <!-- readme-test: walkthrough --> is a step. A fenced block right after
// <!-- readme-test: output --> is the output the step before it prints:
// each of its non-empty lines must appear, in that order, as a whole line
// of that step's output (stdout and stderr), where "..." stands for any
// text (a generated id or secret). Any other block of the README is not
// run.
//
// How they run: as a reader pastes them, top to bottom, into one bash
// (variables and functions of one step are seen by the next), in an empty
// directory where the binary runs with its defaults, as `go run
// ./cmd/iotgate` does in the repository's root (data in ./data, so the
// README's data/credentials.json and data/tls/ca.pem are where it says).
// The test adds only what a reader's eyes do: `set -euo pipefail`, so a
// failing command or an unset variable stops the run at its step, and each
// step's output is kept apart for the comparison.
//
// What the test substitutes: only ports. The README names the default
// ports (8080, 8443, 1883, 8883, 5683, 5684) as "localhost:PORT" or
// "-p PORT"; the test starts the binary with a config that sets just the
// six listen addresses to ":PORT" (every other key its default) on free
// ports, and rewrites those two forms. A default port left in a step in
// any other form fails the test, rather than reaching a server on the
// real port.
//
// It also checks that every data_dir/... file configs/iotgate.yaml names
// exists after that start on the defaults.
//
// Run it alone with: go test -count=1 -run TestREADMEWalkthrough ./test

const (
	walkthroughMarker = "<!-- readme-test: walkthrough -->"
	outputMarker      = "<!-- readme-test: output -->"
)

// readmeStep is one shell block of the walk-through.
type readmeStep struct {
	line   int      // line of the opening fence in README.md
	script string   // the block's text
	output []string // the lines it must print, "..." for any text; nil: not checked
}

// parseWalkthrough returns the marked steps of a README in order.
func parseWalkthrough(readme string) ([]readmeStep, error) {
	lines := strings.Split(readme, "\n")
	var steps []readmeStep
	// block returns the fenced block starting at lines[i] and the index
	// after its closing fence.
	block := func(i int, lang string) (string, int, error) {
		if i >= len(lines) || strings.TrimSpace(lines[i]) != "```"+lang {
			return "", 0, fmt.Errorf("line %d: a readme-test marker must be followed by a ```%s fence", i, lang)
		}
		for j := i + 1; j < len(lines); j++ {
			if strings.TrimSpace(lines[j]) == "```" {
				return strings.Join(lines[i+1:j], "\n") + "\n", j + 1, nil
			}
		}
		return "", 0, fmt.Errorf("line %d: fence never closed", i+1)
	}
	for i := 0; i < len(lines); i++ {
		switch strings.TrimSpace(lines[i]) {
		case walkthroughMarker:
			text, next, err := block(i+1, "sh")
			if err != nil {
				return nil, err
			}
			steps = append(steps, readmeStep{line: i + 2, script: text})
			i = next - 1
		case outputMarker:
			text, next, err := block(i+1, "")
			if err != nil {
				return nil, err
			}
			if len(steps) == 0 || steps[len(steps)-1].output != nil {
				return nil, fmt.Errorf("line %d: an output block must follow a walkthrough step that has none", i+1)
			}
			want := []string{}
			for _, l := range strings.Split(text, "\n") {
				if l = strings.TrimSpace(l); l != "" {
					want = append(want, l)
				}
			}
			steps[len(steps)-1].output = want
			i = next - 1
		}
	}
	if len(steps) == 0 {
		return nil, errors.New("no " + walkthroughMarker + " block")
	}
	return steps, nil
}

// matchOutput reports the first line of want that got does not contain,
// in order, as a whole line ("..." matching any text); "" if all match.
func matchOutput(want []string, got string) string {
	gotLines := strings.Split(got, "\n")
	at := 0
	for _, w := range want {
		parts := strings.Split(w, "...")
		for i, p := range parts {
			parts[i] = regexp.QuoteMeta(p)
		}
		re := regexp.MustCompile("^" + strings.Join(parts, ".*") + "$")
		for ; at < len(gotLines); at++ {
			if re.MatchString(strings.TrimSpace(gotLines[at])) {
				break
			}
		}
		if at == len(gotLines) {
			return w
		}
		at++
	}
	return ""
}

// readmePorts maps each default port the README names to its listener.
var readmePorts = []struct{ port, key, network string }{
	{"8080", "api.listen", "tcp"},
	{"8443", "api.tls_listen", "tcp"},
	{"1883", "mqtt.listen", "tcp"},
	{"8883", "mqtt.tls_listen", "tcp"},
	{"5683", "coap.listen", "udp"},
	{"5684", "coap.dtls_listen", "udp"},
}

var (
	readmePortForm = regexp.MustCompile(`(localhost:|-p )(8080|8443|1883|8883|5683|5684)\b`)
	readmeAnyPort  = regexp.MustCompile(`\b(8080|8443|1883|8883|5683|5684)\b`)
)

// TestREADMEWalkthrough runs README.md's walk-through against the real
// binary with the tools it names (see the comment at the top of this file).
func TestREADMEWalkthrough(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	steps, err := parseWalkthrough(string(raw))
	if err != nil {
		t.Fatalf("README.md: %v", err)
	}
	for _, tool := range []struct{ name, pkg string }{
		{"bash", "bash"}, {"curl", "curl"}, {"jq", "jq"}, {"openssl", "openssl"},
		{"mosquitto_pub", "mosquitto-clients"}, {"mosquitto_sub", "mosquitto-clients"},
		{"coap-client-notls", "libcoap3-bin"}, {"coap-client-openssl", "libcoap3-bin"},
	} {
		interopTool(t, tool.name, "apt-get install "+tool.pkg+" (listed in .ci/packages)")
	}

	dir := t.TempDir()
	ports, logs := startReadmeGate(t, dir)

	// The script: every step, ports substituted, each one's output kept in
	// out.N and its number written to current before it starts.
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, s := range steps {
		text := readmePortForm.ReplaceAllStringFunc(s.script, func(m string) string {
			sub := readmePortForm.FindStringSubmatch(m)
			return sub[1] + ports[sub[2]]
		})
		if left := readmeAnyPort.FindString(text); left != "" {
			t.Fatalf("README.md line %d: default port %s in a form the test does not substitute (use localhost:%s or -p %s)",
				s.line, left, left, left)
		}
		steps[i].script = text
		fmt.Fprintf(&script, "echo %d > current\n{\n%s\n} > out.%d 2>&1\n", i, text, i)
	}
	script.WriteString("echo done > current\n")
	if err := os.WriteFile(filepath.Join(dir, "walkthrough.sh"), []byte(script.String()), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "walkthrough.sh")
	cmd.Dir = dir
	// Its own process group: a step's background job (mosquitto_sub) is
	// ended with it, whatever happens.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, runErr := cmd.CombinedOutput()
	if cmd.Process != nil {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}

	stepOutput := func(i int) string {
		b, _ := os.ReadFile(filepath.Join(dir, "out."+strconv.Itoa(i)))
		return string(b)
	}
	if runErr != nil {
		cur, _ := os.ReadFile(filepath.Join(dir, "current"))
		i, err := strconv.Atoi(strings.TrimSpace(string(cur)))
		if err != nil || i < 0 || i >= len(steps) {
			t.Fatalf("walk-through failed outside any step: %v\n%s", runErr, out)
		}
		t.Fatalf("README.md walk-through step at line %d failed (%v); as run:\n%s\noutput:\n%s\n%s\niotgate's log:\n%s",
			steps[i].line, runErr, indent(steps[i].script, "  "), indent(stepOutput(i), "  "), out, logs())
	}
	// The files configs/iotgate.yaml tells an operator to find in
	// data_dir (it once named a CA file iotgate never wrote) exist after a
	// start on its defaults.
	cfgText, err := os.ReadFile("../configs/iotgate.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range regexp.MustCompile(`data_dir/([\w./-]*\w)`).FindAllStringSubmatch(string(cfgText), -1) {
		if _, err := os.Stat(filepath.Join(dir, "data", m[1])); err != nil {
			t.Errorf("configs/iotgate.yaml names %s, which a start on the defaults did not make: %v", m[0], err)
		}
	}
	for i, s := range steps {
		if s.output == nil {
			continue
		}
		if miss := matchOutput(s.output, stepOutput(i)); miss != "" {
			t.Errorf("README.md walk-through step at line %d: output has no line %q (after the lines before it); it printed:\n%s",
				s.line, miss, indent(stepOutput(i), "  "))
		}
	}
}

// startReadmeGate runs the binary in dir as the README does (defaults,
// data in ./data), with the listeners of ports.yaml on free ports, and
// returns each default port's substitute and the binary's log. A port
// another process takes between its choice and the start (the machine is
// shared) costs a retry on new ports, in a fresh data directory: the
// walk-through begins at a first start.
func startReadmeGate(t *testing.T, dir string) (map[string]string, func() string) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		if err := os.RemoveAll(filepath.Join(dir, "data")); err != nil {
			t.Fatal(err)
		}
		ports := wildcardPorts(t)
		sections := map[string][]string{}
		var order []string
		for _, p := range readmePorts {
			section, key, _ := strings.Cut(p.key, ".")
			if sections[section] == nil {
				order = append(order, section)
			}
			sections[section] = append(sections[section], fmt.Sprintf("  %s: %q", key, ":"+ports[p.port]))
		}
		var cfg strings.Builder
		cfg.WriteString("# The README's defaults, on ports the test chose.\n")
		for _, s := range order {
			fmt.Fprintf(&cfg, "%s:\n%s\n", s, strings.Join(sections[s], "\n"))
		}
		if err := os.WriteFile(filepath.Join(dir, "ports.yaml"), []byte(cfg.String()), 0o600); err != nil {
			t.Fatal(err)
		}
		logs, busy := runReadmeGate(t, dir, "http://127.0.0.1:"+ports["8080"])
		if !busy {
			return ports, logs
		}
		if attempt == 3 {
			t.Fatalf("iotgate found a port busy at three starts:\n%s", logs())
		}
	}
}

// wildcardPorts picks a port for each of readmePorts that is free on every
// address, as the ":PORT" listeners of the README's defaults need.
func wildcardPorts(t *testing.T) map[string]string {
	t.Helper()
	ports := map[string]string{}
	for _, p := range readmePorts {
		var c io.Closer
		var addr string
		if p.network == "udp" {
			pc, err := net.ListenPacket("udp", ":0")
			if err != nil {
				t.Fatal(err)
			}
			c, addr = pc, pc.LocalAddr().String()
		} else {
			l, err := net.Listen("tcp", ":0")
			if err != nil {
				t.Fatal(err)
			}
			c, addr = l, l.Addr().String()
		}
		defer c.Close() // held until all are chosen, so none repeats
		ports[p.port] = addr[strings.LastIndex(addr, ":")+1:]
	}
	return ports
}

// runReadmeGate starts the binary with ports.yaml and waits until it is
// healthy; busy reports that it exited because a port was taken.
func runReadmeGate(t *testing.T, dir, api string) (logs func() string, busy bool) {
	t.Helper()
	cmd := exec.Command(binary(t), "-config", "ports.yaml")
	cmd.Dir = dir
	logFile, err := os.Create(filepath.Join(dir, "iotgate.log"))
	if err != nil {
		t.Fatal(err)
	}
	logs = func() string {
		b, _ := os.ReadFile(logFile.Name())
		return string(b)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			logFile.Close()
			if strings.Contains(logs(), "address already in use") {
				return logs, true
			}
			t.Fatalf("iotgate exited at start:\n%s", logs())
		default:
		}
		if resp, err := http.Get(api + "/healthz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("iotgate not healthy within 60 s:\n%s", logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
		logFile.Close()
	})
	// The credential the README says is printed at first start.
	if !strings.HasPrefix(logs(), "iotgate: generated API credentials") {
		t.Fatalf("iotgate did not print its generated credential first:\n%s", logs())
	}
	return logs, false
}
