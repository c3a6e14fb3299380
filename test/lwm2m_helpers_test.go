package test

import (
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// lwm2mTimings are the coap settings of the LwM2M end-to-end tests: short
// lifetimes, a short queue-mode window and fast sweeps keep them quick.
const lwm2mTimings = `  lifetime_min: 1s
  queue_window: 1s
  request_timeout: 3s
  handshake_timeout: 3s
  sweep_interval: 100ms
`

// startLwM2MGate starts iotgate with the LwM2M test timings and a CoAP
// product "nb". The harness writes the coap section itself, so the gate
// is started once, its config extended, and restarted.
func startLwM2MGate(t *testing.T) *Gate {
	t.Helper()
	return startLwM2MGateWith(t, nil)
}

// startLwM2MGateWith is startLwM2MGate with more lines of the coap
// section, made from the gate's addresses (nil: none).
func startLwM2MGateWith(t *testing.T, coap func(g *Gate) string) *Gate {
	t.Helper()
	g := StartGate(t, GateOptions{Extra: "registry:\n  sweep_interval: 100ms\n"})
	g.Stop()
	raw, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	line := fmt.Sprintf("  dtls_listen: %q\n", g.DTLS)
	if !strings.Contains(string(raw), line) {
		t.Fatalf("config has no %q line:\n%s", line, raw)
	}
	more := lwm2mTimings
	if coap != nil {
		more += coap(g)
	}
	cfg := strings.Replace(string(raw), line, line+more, 1)
	if err := os.WriteFile(g.Config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	g.Restart()
	g.CreateProduct("nb", "CoAP")
	return g
}

// pskText is a device secret whose hex-decoded PSK is printable, so tools
// that take the key as text (libcoap's -k) can use it.
const pskText = "iotgate-psk-0001"

var pskSecret = hex.EncodeToString([]byte(pskText))

// lwm2mDevice creates a device of product nb and returns its id.
func lwm2mDevice(t *testing.T, g *Gate, node string, secure bool, extra map[string]any) string {
	t.Helper()
	auth := map[string]any{"secret": pskSecret, "secure_access": secure}
	for k, v := range extra {
		auth[k] = v
	}
	d := g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": node, "product_id": "nb", "auth_info": auth})
	return d["device_id"].(string)
}

func deviceStatus(t *testing.T, g *Gate, id string) string {
	t.Helper()
	d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id), nil)
	return d["status"].(string)
}

func waitDeviceStatus(t *testing.T, g *Gate, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := deviceStatus(t, g, id)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("device %s is %s, want %s; logs:\n%s", id, got, want, g.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// asyncCommand posts an asynchronous command and returns its id.
func asyncCommand(t *testing.T, g *Gate, dev string, body map[string]any) string {
	t.Helper()
	out := g.MustDo(http.StatusCreated, "POST", g.P("/devices/"+dev+"/async-commands"), body)
	return out["command_id"].(string)
}

func waitCommand(t *testing.T, g *Gate, dev, id, want string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+dev+"/async-commands/"+id), nil)
		if c["status"] == want {
			return c
		}
		if time.Now().After(deadline) {
			t.Fatalf("command %s is %v (result %v), want %s; logs:\n%s", id, c["status"], c["result"], want, g.Logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// goClient dials the gate with iotgate's own LwM2M client.
func goClient(t *testing.T, g *Gate, cfg lwm2mclient.Config) *lwm2mclient.Client {
	t.Helper()
	if cfg.Server == "" {
		cfg.Server = g.CoAP
		if cfg.PSK != nil {
			cfg.Server = g.DTLS
		}
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 3 * time.Second
	}
	c, err := lwm2mclient.Dial(context.Background(), cfg)
	if err != nil {
		t.Fatalf("dial %s: %v", cfg.Server, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// interopTool returns the path of an external client, skipping the test
// when it is missing outside CI and failing it under CI, where the CI
// script installs it.
func interopTool(t *testing.T, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is not installed (CI must install it: %s)", name, install)
	}
	t.Skipf("%s is not installed; install it with: %s", name, install)
	return ""
}
