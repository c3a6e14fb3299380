package test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Interop with LwM2M clients that are not ours. CI installs them (Debian
// libcoap3-bin; npm ci in test/node); elsewhere a missing tool skips.

// TestLwM2MInteropLibcoapNoSec: libcoap's coap-client registers over
// NoSec and the device is ONLINE through the REST API.
func TestLwM2MInteropLibcoapNoSec(t *testing.T) {
	tool := interopTool(t, "coap-client-notls", "apt-get install libcoap3-bin")
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "libcoap-1", false, nil)
	out := runTool(t, tool, "-m", "post", "-t", "40", "-e", "</1/0>,</3/0>",
		"coap://"+g.CoAP+"/rd?ep=libcoap-1&lt=300&lwm2m=1.1&b=U")
	waitDeviceStatus(t, g, dev, "ONLINE")
	t.Logf("coap-client: %q", out)
}

// TestLwM2MInteropLibcoapDTLS: libcoap (OpenSSL) registers over DTLS-PSK
// with -u identity -k key.
func TestLwM2MInteropLibcoapDTLS(t *testing.T) {
	tool := interopTool(t, "coap-client-openssl", "apt-get install libcoap3-bin")
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "libcoap-2", true, nil)
	runTool(t, tool, "-m", "post", "-t", "40", "-e", "</1/0>,</3/0>", "-u", "libcoap-2", "-k", pskText,
		"coaps://"+g.DTLS+"/rd?ep=libcoap-2&lt=300&lwm2m=1.1&b=U")
	waitDeviceStatus(t, g, dev, "ONLINE")

	// The wrong key registers nothing.
	bad := lwm2mDevice(t, g, "libcoap-3", true, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, _ = exec.CommandContext(ctx, tool, "-B", "3", "-m", "post", "-u", "libcoap-3", "-k", "wrong-key-000001",
		"coaps://"+g.DTLS+"/rd?ep=libcoap-3").CombinedOutput()
	if st := deviceStatus(t, g, bad); st != "INACTIVE" {
		t.Fatalf("device registered with a wrong key is %s", st)
	}
}

func runTool(t *testing.T, tool string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, tool, append([]string{"-B", "10"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
	return string(out)
}

// TestLwM2MInteropNodeClient: lwm2m-node-lib's client registers over
// NoSec and answers a READ of /3/0/0 issued through the REST API.
func TestLwM2MInteropNodeClient(t *testing.T) {
	node := interopTool(t, "node", "apt-get install nodejs")
	script, err := filepath.Abs("node/lwm2m-client.js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "lwm2m-node-lib")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("lwm2m-node-lib is not installed (CI must run: npm ci --prefix test/node)")
		}
		t.Skip("lwm2m-node-lib is not installed; run: npm ci --prefix test/node")
	}
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "node-1", false, nil)
	host, port, _ := net.SplitHostPort(g.CoAP)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script, host, port, "node-1", "Telefonica I+D")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	registered := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "REGISTERED") {
				registered <- line
			}
		}
		close(registered)
	}()
	select {
	case line, ok := <-registered:
		if !ok {
			t.Fatalf("node client exited without registering: %s\n%s", stderr.String(), g.Logs())
		}
		t.Log(line)
	case <-time.After(20 * time.Second):
		t.Fatalf("node client did not register: %s", stderr.String())
	}
	waitDeviceStatus(t, g, dev, "ONLINE")

	id := asyncCommand(t, g, dev, map[string]any{"service_id": "LwM2M", "command_name": "READ",
		"paras": map[string]any{"path": "/3/0/0"}, "send_strategy": "immediately"})
	res := waitCommand(t, g, dev, id, "SUCCESSFUL")["result"].(map[string]any)
	vals, _ := res["values"].([]any)
	if len(vals) != 1 || vals[0].(map[string]any)["value"] != "Telefonica I+D" {
		t.Fatalf("READ /3/0/0 from lwm2m-node-lib: %v", res)
	}
}
