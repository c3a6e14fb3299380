package test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/metrics/metricstest"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape is one read of /metrics: its series by name and labels.
type scrape map[string]*dto.MetricFamily

// scrapeMetrics GETs url (with token, unless empty) and parses the
// answer, failing the test unless it is 200.
func scrapeMetrics(t *testing.T, url, token string) scrape {
	t.Helper()
	code, body := getMetrics(t, url, token)
	if code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v", err)
	}
	return fams
}

func getMetrics(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// value is the series of name with the given label pairs: a counter's or
// gauge's value, a histogram's sample count. A missing series fails the
// test: every label value the platform knows is exported from the start.
func (s scrape) value(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	v, ok := metricstest.Value(s, name, labels...)
	if !ok {
		t.Fatalf("no series %s%v", name, labels)
	}
	return v
}

// TestMetricsMove scrapes /metrics on the API listener (loopback: no
// token), drives an MQTT device with mosquitto_pub, a refused MQTT
// login, a LwM2M registration over DTLS, an asynchronous command and a
// manual ban,
// scrapes again and checks that each of those moved its own counters,
// and only by what was done.
func TestMetricsMove(t *testing.T) {
	requireTool(t, "mosquitto_pub")
	g := StartGate(t, GateOptions{})
	url := g.API + "/metrics"
	g.CreateProduct("nb", "CoAP")
	dev := lwm2mDevice(t, g, "metered-1", true, nil)
	d := createMQTTDevice(t, g, "meterm", "n1", false)

	before := scrapeMetrics(t, url, "")

	// MQTT: one accepted connect with one message, one wrong password.
	mustRun(t, "mosquitto_pub", append(d.args(false), "-q", "1", "-t", "$oc/devices/"+d.id+"/sys/messages/up", "-m", "up")...)
	bad := append(hostArgs(g, false), "-i", d.id+"_0_0_"+time.Now().UTC().Format("2006010215"), "-u", d.id,
		"-P", strings.Repeat("0", 64), "-t", "$oc/devices/"+d.id+"/sys/messages/up", "-m", "x")
	if out, err := run(t, "mosquitto_pub", bad...); err == nil {
		t.Fatalf("a wrong password was accepted: %s", out)
	}
	// LwM2M over DTLS: a registration and a READ.
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "metered-1", PSKIdentity: "metered-1", PSK: []byte(pskText), Lifetime: 60})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDeviceStatus(t, g, dev, "ONLINE")
	id := asyncCommand(t, g, dev, map[string]any{"service_id": "LwM2M", "command_name": "READ",
		"paras": map[string]any{"path": "/3/0/0"}, "send_strategy": "immediately"})
	waitCommand(t, g, dev, id, "SUCCESSFUL")
	// A manual ban of an identity.
	g.MustDo(http.StatusCreated, "POST", g.P("/banned"), map[string]any{"type": "identity", "value": "someone-else", "duration": 600})

	after := scrapeMetrics(t, url, "")
	delta := func(name string, labels ...string) float64 {
		return after.value(t, name, labels...) - before.value(t, name, labels...)
	}
	for _, tc := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"iotgate_connects_total", []string{"protocol", "mqtt", "result", "accepted"}, 1},
		{"iotgate_connects_total", []string{"protocol", "mqtt", "result", "bad_credentials"}, 1},
		{"iotgate_auth_failures_total", []string{"protocol", "mqtt", "reason", "bad_secret"}, 1},
		{"iotgate_auth_failures_total", []string{"protocol", "mqtt", "reason", "unknown_device"}, 0},
		{"iotgate_messages_total", []string{"protocol", "mqtt", "direction", "in"}, 1},
		{"iotgate_connects_total", []string{"protocol", "lwm2m", "result", "accepted"}, 1},
		{"iotgate_connects_total", []string{"protocol", "lwm2m", "result", "refused"}, 0},
		{"iotgate_sessions", []string{"protocol", "lwm2m"}, 1},
		{"iotgate_dtls_handshake_duration_seconds", []string{"result", "ok"}, 1},
		{"iotgate_dtls_handshake_duration_seconds", []string{"result", "failed"}, 0},
		{"iotgate_commands_total", []string{"kind", "async", "status", "SUCCESSFUL"}, 1},
		{"iotgate_commands_total", []string{"kind", "sync", "status", "SUCCESSFUL"}, 0},
		{"iotgate_bans", []string{"source", "manual", "target", "identity"}, 1},
		{"iotgate_bans", []string{"source", "auto", "target", "identity"}, 0},
		{"iotgate_bans_imposed_total", []string{"rule", "identity_failures"}, 0},
	} {
		if got := delta(tc.name, tc.labels...); got != tc.want {
			t.Errorf("%s%v moved by %v, want %v", tc.name, tc.labels, got, tc.want)
		}
	}
	// The READ was a request out and its answer; the registration's
	// Observe of /19/0/0 another.
	if got := delta("iotgate_messages_total", "protocol", "lwm2m", "direction", "out"); got < 2 {
		t.Errorf("lwm2m messages out moved by %v, want at least 2", got)
	}
	// Every write waited for the store: status changes, the command's
	// transitions, the message.
	if got := delta("iotgate_store_write_duration_seconds"); got < 4 {
		t.Errorf("store writes observed %v, want at least 4", got)
	}
	if got := delta("iotgate_store_commit_batch_size"); got < 1 {
		t.Errorf("commits observed %v", got)
	}
	for _, name := range []string{"go_goroutines", "process_resident_memory_bytes", "iotgate_store_size_bytes"} {
		after.value(t, name)
	}
	// No series carries a device's id.
	_, body := getMetrics(t, url, "")
	for _, id := range []string{dev, d.id, "metered-1"} {
		if strings.Contains(body, id) {
			t.Errorf("/metrics names device %s", id)
		}
	}
}

// TestMetricsListenNeedsToken: metrics.listen on a wildcard address (not
// loopback) wants an API token; the API listener then serves no
// /metrics.
func TestMetricsListenNeedsToken(t *testing.T) {
	port := wildcardPort(t)
	g := StartGate(t, GateOptions{Extra: fmt.Sprintf("metrics:\n  listen: \"0.0.0.0:%d\"\n", port)})
	url := fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	for _, token := range []string{"", "not-a-token"} {
		if code, body := getMetrics(t, url, token); code != http.StatusUnauthorized {
			t.Errorf("token %q: %d %s, want 401", token, code, body)
		}
	}
	scrapeMetrics(t, url, g.Token)
	if code, _ := getMetrics(t, g.API+"/metrics", ""); code != http.StatusNotFound {
		t.Errorf("the API listener answered /metrics with %d while metrics.listen is set, want 404", code)
	}
	if !strings.Contains(g.Logs(), "token_required=true") {
		t.Errorf("the log does not say the metrics listener needs a token:\n%s", g.Logs())
	}
}

// wildcardPort is a TCP port free on every address a moment ago, below
// Linux's ephemeral range (32768-60999), so that the kernel does not hand
// it to the gate's own listeners (chosen with port 0) or to a
// connection between this check and the gate's bind.
func wildcardPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		p := 10000 + rand.N(22000)
		if l, err := net.Listen("tcp", fmt.Sprintf("0.0.0.0:%d", p)); err == nil {
			l.Close()
			return p
		}
	}
	t.Fatal("no free port in 10000-31999")
	return 0
}
