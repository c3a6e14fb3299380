package test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var fleetBin builtBinary

// fleetBinary builds ./cmd/iotgate-fleet once per test run. It is built
// without the race detector even under -race: the fleet's unit tests
// check it for races, and here the detector's cost is better spent on the
// server, which the harness builds with it.
func fleetBinary(t testing.TB) string {
	t.Helper()
	return fleetBin.get(t, "../cmd/iotgate-fleet", "iotgate-fleet", false)
}

// fleetSummary is the part of iotgate-fleet's JSON summary the smoke test
// checks.
type fleetSummary struct {
	Error     string `json:"error"`
	Protocols []struct {
		Protocol   string        `json:"protocol"`
		Workers    int           `json:"workers"`
		Create     *fleetOutcome `json:"create"`
		Connect    *fleetOutcome `json:"connect"`
		Register   *fleetOutcome `json:"register"`
		Handshake  *fleetOutcome `json:"handshake"`
		Disconnect *fleetOutcome `json:"disconnect"`
		Reconnect  *fleetOutcome `json:"reconnect"`
		Final      *fleetOutcome `json:"final_disconnect"`
		Delete     *fleetOutcome `json:"delete"`
		Memory     *struct {
			Plateau struct {
				RSS        int64 `json:"rss_bytes"`
				Goroutines int64 `json:"goroutines"`
			} `json:"plateau"`
		} `json:"memory"`
		Hold *struct {
			Sent     int64         `json:"uplinks_sent"`
			Acked    int64         `json:"uplinks_acked"`
			Commands *fleetOutcome `json:"commands"`
		} `json:"hold"`
	} `json:"protocols"`
}

type fleetOutcome struct {
	OK       int            `json:"ok"`
	Failed   int            `json:"failed"`
	Failures map[string]int `json:"failures"`
}

// TestFleetSmoke runs iotgate-fleet against the real binary with 1,000
// devices per protocol (MQTT, MQTTS, LwM2M NoSec, LwM2M DTLS-PSK), each
// fleet split over two worker processes: every device is created,
// connects, sends uplinks, answers commands, disconnects, reconnects and
// is deleted, with no failure. It checks correctness only; timing is
// BENCHMARKS.md's business (test/bench/run.sh).
func TestFleetSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 4,000 device sessions")
	}
	fleet := fleetBinary(t)
	debug := freePorts(t, "tcp")[0]
	g := StartGate(t, GateOptions{Extra: fmt.Sprintf("debug_listen: %q\n", debug)})
	const n = 1000
	out := filepath.Join(t.TempDir(), "summary.json")
	cmd := exec.Command(fleet,
		"-api", g.API, "-project", g.Project, "-token", g.Token,
		"-protocols", "mqtt,mqtts,lwm2m,dtls", "-n", fmt.Sprint(n), "-per-process", fmt.Sprint(n/2),
		"-mqtt", g.MQTT, "-mqtts", g.MQTTS, "-cafile", filepath.Join(g.DataDir, "data", "tls", "ca.pem"),
		"-coap", g.CoAP, "-dtls", g.DTLS,
		"-concurrency", "64", "-hold", "2s", "-uplink-interval", "2s", "-commands", "5", "-settle", "0s",
		"-delete", "-timeout", "20s", "-deadline", "3m",
		"-server-pid", fmt.Sprint(g.cmd.Process.Pid), "-debug-url", "http://"+debug, "-json", out)
	sum, raw := runFleetCmd(t, g, cmd, out)
	if sum.Error != "" || len(sum.Protocols) != 4 {
		t.Fatalf("summary: error %q, %d protocols\n%s", sum.Error, len(sum.Protocols), raw)
	}
	for _, p := range sum.Protocols {
		if p.Workers != 2 {
			t.Errorf("%s: %d worker processes, want 2", p.Protocol, p.Workers)
		}
		for name, o := range map[string]*fleetOutcome{"create": p.Create, "connect": p.Connect,
			"disconnect": p.Disconnect, "reconnect": p.Reconnect, "final disconnect": p.Final, "delete": p.Delete} {
			if o == nil || o.OK != n || o.Failed != 0 {
				t.Errorf("%s %s: %+v", p.Protocol, name, o)
			}
		}
		if strings.HasPrefix(p.Protocol, "mqtt") {
			// One uplink per device in the 2 s hold, each acknowledged
			// (QoS 1) after the platform stored it.
			if h := p.Hold; h == nil || h.Sent < n/2 || h.Acked != h.Sent {
				t.Errorf("%s hold: %+v", p.Protocol, h)
			}
		} else if p.Register == nil || p.Register.OK != n {
			t.Errorf("%s register: %+v", p.Protocol, p.Register)
		}
		if p.Protocol == "dtls" && (p.Handshake == nil || p.Handshake.OK != n) {
			t.Errorf("dtls handshake: %+v", p.Handshake)
		}
		if h := p.Hold; h == nil || h.Commands == nil || h.Commands.OK != 5 || h.Commands.Failed != 0 {
			t.Errorf("%s commands: %+v", p.Protocol, h)
		}
		if m := p.Memory; m == nil || m.Plateau.RSS <= 0 || m.Plateau.Goroutines <= 0 {
			t.Errorf("%s: server memory not sampled: %+v", p.Protocol, m)
		}
	}
	// Deleted means gone.
	for _, product := range []string{"fleet-mqtt", "fleet-nb"} {
		body := g.MustDo(http.StatusOK, "GET", g.P("/devices?product_id="+product+"&limit=1"), nil)
		if devs, _ := body["devices"].([]any); len(devs) != 0 {
			t.Errorf("product %s still has devices: %v", product, devs)
		}
	}
}

// runFleetCmd runs an iotgate-fleet command against g and reads the
// summary it wrote to out.
func runFleetCmd(t *testing.T, g *Gate, cmd *exec.Cmd, out string) (fleetSummary, []byte) {
	t.Helper()
	logs, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("iotgate-fleet: %v\n%s\nserver logs (tail):\n%s", err, logs, tail(g.Logs(), 4000))
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var sum fleetSummary
	if err := json.Unmarshal(raw, &sum); err != nil {
		t.Fatal(err)
	}
	return sum, raw
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// TestFleetSharedSockets runs the fleet's NoSec LwM2M devices over shared
// sockets (-shared-sockets, the mode BENCHMARKS.md's million-registration
// hold needs) against the real binary: 2,000 devices on 8 sockets over
// two worker processes, each device its own source address. Every device
// registers, is observed and sends uplinks the platform stores, answers
// the READ commands sent to it, de-registers and registers again; the
// server sees each as its own client.
func TestFleetSharedSockets(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 2,000 LwM2M registrations")
	}
	fleet := fleetBinary(t)
	g := StartGate(t, GateOptions{})
	const n = 2000
	out := filepath.Join(t.TempDir(), "summary.json")
	cmd := exec.Command(fleet,
		"-api", g.API, "-project", g.Project, "-token", g.Token,
		"-protocols", "lwm2m", "-shared-sockets", "-spread", "250", "-n", fmt.Sprint(n), "-per-process", fmt.Sprint(n/2),
		"-coap", g.CoAP, "-concurrency", "64", "-hold", "4s", "-uplink-interval", "2s", "-commands", "10", "-settle", "0s",
		"-timeout", "20s", "-deadline", "3m", "-json", out)
	sum, raw := runFleetCmd(t, g, cmd, out)
	if sum.Error != "" || len(sum.Protocols) != 1 {
		t.Fatalf("summary: error %q, %d protocols\n%s", sum.Error, len(sum.Protocols), raw)
	}
	p := sum.Protocols[0]
	for name, o := range map[string]*fleetOutcome{"create": p.Create, "connect": p.Connect, "register": p.Register,
		"disconnect": p.Disconnect, "reconnect": p.Reconnect, "final disconnect": p.Final} {
		if o == nil || o.OK != n || o.Failed != 0 {
			t.Errorf("%s: %+v", name, o)
		}
	}
	if h := p.Hold; h == nil || h.Sent < n/2 || h.Commands == nil || h.Commands.OK != 10 || h.Commands.Failed != 0 {
		t.Errorf("hold: %+v\n%s", h, raw)
	}
	// The uplinks reached the platform: a device's report is stored.
	body := g.MustDo(http.StatusOK, "GET", g.P("/devices?product_id=fleet-nb&limit=1"), nil)
	devs, _ := body["devices"].([]any)
	if len(devs) != 1 {
		t.Fatalf("devices: %v", body)
	}
	id, _ := devs[0].(map[string]any)["device_id"].(string)
	msgs := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id+"/device-messages"), nil)
	if m, _ := msgs["messages"].([]any); len(m) == 0 {
		t.Errorf("device %s: no uplink stored: %v", id, msgs)
	}
}
