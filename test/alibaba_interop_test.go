package test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestAliInteropNodeSDK: Alibaba's own Node device SDK, npm
// alibabacloud-iot-device-sdk 1.2.8 unmodified (test/node, installed by
// npm ci), registers over HTTPS at the platform's registerURL (the form
// of its default, https://host/auth/register/device, on the gate's TLS
// port; the SDK posts with axios and takes no TLS option, so node is
// told to trust the gate's generated CA by NODE_EXTRA_CA_CERTS), connects
// over plain MQTT (securemode 3) with the DeviceSecret it received, posts
// properties, publishes on its own topic, and is refused a second
// registration (6289). The SDK always signs with HMAC-SHA1, so it is
// configured for sha1 (with sha256 it would claim hmacsha256 and be
// rightly refused).
//
// Without node or the package, the test is skipped, except under CI,
// whose script installs both: there it fails.
func TestAliInteropNodeSDK(t *testing.T) {
	node := interopTool(t, "node", "apt-get install nodejs npm")
	script, err := filepath.Abs("node/alibaba-device.js")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "alibabacloud-iot-device-sdk", "package.json")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("alibabacloud-iot-device-sdk is not installed (CI must run: npm ci --prefix test/node)")
		}
		t.Skip("alibabacloud-iot-device-sdk is not installed; run: npm ci --prefix test/node")
	}

	g := StartGate(t, GateOptions{})
	g.aliProduct("a1NodeSDK01", "prodSecretNode01", true, false, "")
	id := g.aliDevice("a1NodeSDK01", "node-dev1", "devSecretNode0123", false)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The SDK verifies the server: without the CA it refuses the gate.
	untrusting := exec.CommandContext(ctx, node, script, g.APIS+"/auth/register/device", "mqtt://"+g.MQTT,
		"a1NodeSDK01", "prodSecretNode01", "node-dev1", "x")
	untrusting.Dir, untrusting.Env = filepath.Dir(script), nodeEnv()
	if out, err := untrusting.CombinedOutput(); err == nil || !strings.Contains(string(out), "unable to verify the first certificate") {
		t.Fatalf("registration without trusting the CA: err %v, output %s", err, out)
	}
	cmd := exec.CommandContext(ctx, node, script, g.APIS+"/auth/register/device", "mqtt://"+g.MQTT,
		"a1NodeSDK01", "prodSecretNode01", "node-dev1", "hello from the Alibaba SDK")
	cmd.Dir = filepath.Dir(script)
	cmd.Env = nodeEnv("NODE_EXTRA_CA_CERTS=" + filepath.Join(g.DataDir, "data", "tls", "ca.pem"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node SDK: %v\nstdout: %s\nstderr: %s\ngate logs:\n%s", err, out, stderr.String(), g.Logs())
	}
	var res struct {
		DeviceSecret string `json:"deviceSecret"`
		PostReply    int    `json:"postReply"`
		Topic        string `json:"topic"`
		Second       struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"second"`
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &res); err != nil {
		t.Fatalf("node SDK output %q: %v", out, err)
	}
	if res.DeviceSecret != "devSecretNode0123" || res.PostReply != 200 {
		t.Fatalf("node SDK result %+v", res)
	}
	if res.Second.Code != 6289 || res.Second.Message != "device is already active" {
		t.Fatalf("second registration: %+v", res.Second)
	}

	// What the SDK sent arrived: its message on its own topic, its
	// properties in the shadow, and the device was activated.
	msgs := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id+"/device-messages"), nil)["messages"].([]any)
	if len(msgs) != 1 {
		t.Fatalf("messages %v", msgs)
	}
	m := msgs[0].(map[string]any)
	if decode64(t, m["payload"]) != "hello from the Alibaba SDK" || m["topic"] != res.Topic {
		t.Fatalf("message %v", m)
	}
	sh := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id+"/shadow"), nil)
	if p := sh["shadow"].([]any)[0].(map[string]any)["reported"].(map[string]any)["properties"].(map[string]any); p["Power"] != 42.0 {
		t.Fatalf("shadow %v", sh)
	}
	d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id), nil)
	if d["active_time"] == nil || d["active_time"] == "" || d["status"] == "INACTIVE" {
		t.Fatalf("device after the SDK's session: %v", d)
	}
}

// nodeEnv is this process's environment for a node script, plus extra,
// without proxy variables: the SDK's axios 0.18 sends https:// requests to
// $https_proxy and ignores $no_proxy, so loopback would go to the proxy.
func nodeEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch strings.ToLower(k) {
		case "https_proxy", "http_proxy", "no_proxy":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}
