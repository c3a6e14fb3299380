package test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestLwM2MInteropWakaamaSend: Wakaama's lwm2mclient (LwM2M 1.1, SenML
// JSON) Sends /3/0/0 and /3/0/9 on its command line ("send 123 ...", 123
// being its server's short id), over NoSec and DTLS; iotgate keeps them
// as a device message on /dp and as the LwM2M service's reported
// properties, both visible through the REST API. Wakaama's client
// answers no FETCH or iPATCH (it leaves them unanswered, checked here for
// READ_COMPOSITE), so the composite operations are tested against the
// project's client only.
func TestLwM2MInteropWakaamaSend(t *testing.T) {
	for _, tc := range []struct {
		name, env string
		secure    bool
	}{
		{"NoSec", "WAKAAMA_CLIENT", false},
		{"DTLS", "WAKAAMA_CLIENT_DTLS", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bin := wakaamaBinary(t, tc.env)
			g := startLwM2MGate(t)
			node := "wakaama-send-" + strings.ToLower(tc.name)
			dev := lwm2mDevice(t, g, node, tc.secure, nil)
			server, args := g.CoAP, []string{"-n", node}
			if tc.secure {
				server, args = g.DTLS, append(args, "-i", node, "-s", hex.EncodeToString([]byte(pskText)))
			}
			out, cli := startWakaamaCLI(t, g, bin, server, args...)
			deadline := time.Now().Add(20 * time.Second)
			for deviceStatus(t, g, dev) != "ONLINE" {
				if time.Now().After(deadline) {
					t.Fatalf("Wakaama did not register; its output:\n%s\niotgate:\n%s", out(), g.Logs())
				}
				time.Sleep(100 * time.Millisecond)
			}
			wakaamaSend(t, g, dev, cli, out, "/3/0/0", "/3/0/9")
			if tc.secure {
				return
			}
			// Wakaama's client has no FETCH and leaves a READ_COMPOSITE
			// unanswered: the command ends TIMEOUT after
			// coap.request_timeout instead of waiting for ever.
			id := asyncCommand(t, g, dev, map[string]any{"service_id": "LwM2M", "command_name": "READ_COMPOSITE",
				"paras": map[string]any{"paths": []string{"/3/0/0", "/1/0/1"}}, "send_strategy": "immediately"})
			waitCommandOr(t, g, dev, id, "TIMEOUT", out)
		})
	}
}

// wakaamaSend has the client Send paths and waits for the values to be
// kept: a device message on /dp with each path, and each path a reported
// property of the service LwM2M.
func wakaamaSend(t *testing.T, g *Gate, dev string, cli io.Writer, out func() string, paths ...string) {
	t.Helper()
	if _, err := fmt.Fprintf(cli, "send 123 %s\n", strings.Join(paths, " ")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	var msgs []any
	for len(msgs) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no message from Wakaama's Send; its output:\n%s\niotgate:\n%s", out(), g.Logs())
		}
		time.Sleep(100 * time.Millisecond)
		msgs, _ = g.MustDo(http.StatusOK, "GET", g.P("/devices/"+dev+"/device-messages"), nil)["messages"].([]any)
	}
	m := msgs[0].(map[string]any)
	var values []map[string]any
	if err := json.Unmarshal([]byte(decode64(t, m["payload"])), &values); err != nil || m["topic"] != "/dp" {
		t.Fatalf("message %v: %v", m, err)
	}
	sent := map[string]any{}
	for _, v := range values {
		sent[v["path"].(string)] = v["value"]
	}
	if sent["/3/0/0"] != "Open Mobile Alliance" {
		t.Fatalf("Send's values %v", values)
	}
	sh := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+dev+"/shadow"), nil)
	var props map[string]any
	for _, s := range sh["shadow"].([]any) {
		if s := s.(map[string]any); s["service_id"] == "LwM2M" {
			props, _ = s["reported"].(map[string]any)["properties"].(map[string]any)
		}
	}
	for _, p := range paths {
		if _, ok := sent[p]; !ok {
			t.Errorf("Send's message lacks %s: %v", p, values)
		}
		if props[p] != sent[p] {
			t.Errorf("reported %s = %v, sent %v (shadow %v)", p, props[p], sent[p], sh)
		}
	}
}
