package test

import (
	"bytes"
	"context"
	"encoding/hex"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
)

// Interop with Wakaama (github.com/eclipse/wakaama), the reference C
// LwM2M client. CI cannot fetch its source, so the tests run only when
// WAKAAMA_CLIENT / WAKAAMA_CLIENT_DTLS name its example clients, built
// outside this repository (never commit its source or binaries):
const wakaamaBuild = `build Wakaama's example clients outside the repository, then set WAKAAMA_CLIENT and WAKAAMA_CLIENT_DTLS:
  git clone https://github.com/eclipse/wakaama /work/ext/wakaama
  git -C /work/ext/wakaama submodule update --init examples/shared/tinydtls
  apt-get install cmake gcc make autoconf automake   # tinydtls runs autoreconf
  cmake -S /work/ext/wakaama/examples/client -B /work/ext/wakaama-build -DCMAKE_BUILD_TYPE=Release
  make -C /work/ext/wakaama-build lwm2mclient lwm2mclient_tinydtls
  export WAKAAMA_CLIENT=/work/ext/wakaama-build/lwm2mclient WAKAAMA_CLIENT_DTLS=/work/ext/wakaama-build/lwm2mclient_tinydtls`

// wakaamaBinary returns the binary env names, or skips saying how to
// build it.
func wakaamaBinary(t *testing.T, env string) string {
	t.Helper()
	p := os.Getenv(env)
	if p == "" {
		t.Skipf("%s is not set; to run this test, %s", env, wakaamaBuild)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s=%s: %v", env, p, err)
	}
	return p
}

// TestLwM2MInteropWakaamaNoSec: Wakaama's lwm2mclient, built with its
// default example options (SenML JSON, no TLV: it registers with
// </>;rt="oma.lwm2m";ct=110), registers over NoSec and answers READ,
// WRITE, EXECUTE and OBSERVE issued through the REST API with no format
// given.
func TestLwM2MInteropWakaamaNoSec(t *testing.T) {
	bin := wakaamaBinary(t, "WAKAAMA_CLIENT")
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "wakaama-1", false, nil)
	out := startWakaama(t, g, bin, g.CoAP, "-n", "wakaama-1")
	wakaamaCommands(t, g, dev, out)
}

// TestLwM2MInteropWakaamaDTLS: the same with lwm2mclient_tinydtls over
// DTLS-PSK (tinydtls offers TLS_PSK_WITH_AES_128_CCM_8), the PSK identity
// being the node id.
func TestLwM2MInteropWakaamaDTLS(t *testing.T) {
	bin := wakaamaBinary(t, "WAKAAMA_CLIENT_DTLS")
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "wakaama-2", true, nil)
	out := startWakaama(t, g, bin, g.DTLS, "-n", "wakaama-2", "-i", "wakaama-2", "-s", hex.EncodeToString([]byte(pskText)))
	wakaamaCommands(t, g, dev, out)
}

// startWakaama runs a Wakaama client against server until the test ends
// and returns its output so far, for diagnostics.
func startWakaama(t *testing.T, g *Gate, bin, server string, args ...string) func() string {
	t.Helper()
	out, _ := startWakaamaCLI(t, g, bin, server, args...)
	return out
}

// startWakaamaCLI is startWakaama that also returns the client's command
// line (its stdin): "send 123 /3/0/0" has it Send.
func startWakaamaCLI(t *testing.T, g *Gate, bin, server string, args ...string) (func() string, io.Writer) {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	_, local, _ := net.SplitHostPort(freePorts(t, "udp")[0])
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, append([]string{"-4", "-h", host, "-p", port, "-l", local, "-t", "60"}, args...)...)
	var mu sync.Mutex
	var buf bytes.Buffer
	w := &lockedWriter{mu: &mu, b: &buf}
	cmd.Stdout, cmd.Stderr = w, w
	// Its command line reads stdin: an open pipe nobody writes to keeps
	// it waiting rather than spinning on end of file.
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = stdin.Close(); _ = cmd.Wait() })
	return func() string {
		mu.Lock()
		defer mu.Unlock()
		s := buf.String()
		if len(s) > 8000 {
			s = "..." + s[len(s)-8000:]
		}
		return s
	}, stdin
}

// wakaamaCommands waits for the client to register, then runs READ,
// WRITE, EXECUTE and OBSERVE through the async-command API with no format
// given.
func wakaamaCommands(t *testing.T, g *Gate, dev string, out func() string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for deviceStatus(t, g, dev) != "ONLINE" {
		if time.Now().After(deadline) {
			t.Fatalf("Wakaama did not register; its output:\n%s\niotgate:\n%s", out(), g.Logs())
		}
		time.Sleep(100 * time.Millisecond)
	}
	run := func(name string, paras map[string]any) map[string]any {
		t.Helper()
		id := asyncCommand(t, g, dev, map[string]any{"service_id": "LwM2M", "command_name": name, "paras": paras, "send_strategy": "immediately"})
		c := waitCommandOr(t, g, dev, id, "SUCCESSFUL", out)
		res, _ := c["result"].(map[string]any)
		t.Logf("%s %v: %v", name, paras["path"], res)
		return res
	}

	res := run("READ", map[string]any{"path": "/3/0/0"})
	if !hasValue(res, "/3/0/0", "Open Mobile Alliance") {
		t.Fatalf("READ /3/0/0: %v", res)
	}
	// The whole instance: Wakaama speaks SenML JSON, not TLV.
	res = run("READ", map[string]any{"path": "/3/0"})
	if res["content_format"] != float64(format.FormatSenMLJSON) || !hasValue(res, "/3/0/0", "Open Mobile Alliance") {
		t.Fatalf("READ /3/0: %v", res)
	}
	// One resource (text/plain), then two at once (SenML JSON).
	run("WRITE", map[string]any{"path": "/3/0/14", "value": "+02:00"})
	if res := run("READ", map[string]any{"path": "/3/0/14"}); !hasValue(res, "/3/0/14", "+02:00") {
		t.Fatalf("READ /3/0/14 after the WRITE: %v", res)
	}
	run("WRITE", map[string]any{"path": "/3/0", "mode": "update", "values": []any{
		map[string]any{"path": "/3/0/14", "value": "-05:00"}, map[string]any{"path": "/3/0/13", "value": 1700000000}}})
	if res := run("READ", map[string]any{"path": "/3/0/14"}); !hasValue(res, "/3/0/14", "-05:00") {
		t.Fatalf("READ /3/0/14 after the SenML WRITE: %v", res)
	}
	run("EXECUTE", map[string]any{"path": "/3/0/12"}) // Reset Error Code
	// An Observe of the instance is asked for in SenML JSON as well.
	res = run("OBSERVE", map[string]any{"path": "/3/0"})
	if res["content_format"] != float64(format.FormatSenMLJSON) || !hasValue(res, "/3/0/14", "-05:00") {
		t.Fatalf("OBSERVE /3/0: %v", res)
	}
}

// waitCommandOr is waitCommand that shows the client's output on failure.
func waitCommandOr(t *testing.T, g *Gate, dev, id, want string, out func() string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, c := g.Do("GET", g.P("/devices/"+dev+"/async-commands/"+id), nil)
		if code == 200 && c["status"] == want {
			return c
		}
		if time.Now().After(deadline) || (code == 200 && (c["status"] == "FAILED" || c["status"] == "TIMEOUT")) {
			t.Fatalf("command %s is %v (result %v), want %s; Wakaama:\n%s\niotgate:\n%s", id, c["status"], c["result"], want, out(), g.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
