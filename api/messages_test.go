package api

import (
	"context"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

func TestMessageAPIs(t *testing.T) {
	s, reg := newTestServer(t)
	ctx := context.Background()
	for _, p := range []registry.Product{
		{ProjectID: "p1", ProductID: "m", Name: "Meter", DeviceType: "x", ProtocolType: "MQTT"},
		{ProjectID: "p1", ProductID: "nb", Name: "NB", DeviceType: "x", ProtocolType: "CoAP"},
	} {
		if _, err := reg.CreateProduct(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []registry.NewDevice{{ProjectID: "p1", ProductID: "m", NodeID: "n"}, {ProjectID: "p1", ProductID: "nb", NodeID: "imei1"}} {
		if _, err := reg.CreateDevice(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"held", "POST", "/v5/iot/p1/devices/m_n/messages", `{"message_id":"a","message":{"k":1},"ttl":60}`, 201, ""},
		{"ttl step", "POST", "/v5/iot/p1/devices/m_n/messages", `{"message":"x","ttl":7}`, 400, codeInvalidInput},
		{"ttl type", "POST", "/v5/iot/p1/devices/m_n/messages", `{"message":"x","ttl":"7"}`, 400, codeInvalidInput},
		{"ttl 0 offline", "POST", "/v5/iot/p1/devices/m_n/messages", `{"message":"x","ttl":0}`, 403, codeNotOnline},
		{"no message", "POST", "/v5/iot/p1/devices/m_n/messages", `{"message":null}`, 400, codeInvalidInput},
		{"duplicate id", "POST", "/v5/iot/p1/devices/m_n/messages", `{"message_id":"a","message":"x"}`, 400, codeInvalidInput},
		{"message to NB-IoT", "POST", "/v5/iot/p1/devices/nb_imei1/messages", `{"message":"x"}`, 400, codeInvalidInput},
		{"sync command to NB-IoT", "POST", "/v5/iot/p1/devices/nb_imei1/commands", `{"paras":{"a":1}}`, 400, codeInvalidInput},
		{"async command to MQTT", "POST", "/v5/iot/p1/devices/m_n/async-commands", `{"paras":{"a":1}}`, 400, codeInvalidInput},
		{"unknown message", "GET", "/v5/iot/p1/devices/m_n/messages/zz", "", 404, codeMessageNotFound},
		{"other tenant", "GET", "/v5/iot/p2/devices/m_n/messages", "", 404, codeDeviceNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := "tok1"
			if tc.name == "other tenant" {
				tok = "tok2"
			}
			st, out := call(s, tok, tc.method, tc.path, tc.body)
			if st != tc.status || (tc.code != "" && out["error_code"] != tc.code) {
				t.Fatalf("got %d %v, want %d %s", st, out, tc.status, tc.code)
			}
			if tc.name == "held" {
				if r := out["result"].(map[string]any); r["status"] != "PENDING" || out["message_id"] != "a" {
					t.Fatalf("held: %v", out)
				}
			}
		})
	}
	// Show and list in Huawei's DeviceMessage shape, defaults filled in.
	_, m := call(s, "tok1", "GET", "/v5/iot/p1/devices/m_n/messages/a", "")
	if m["status"] != "PENDING" || m["encoding"] != "none" || m["payload_format"] != "standard" ||
		m["topic"] != "$oc/devices/m_n/sys/messages/down" || m["message"].(map[string]any)["k"] != 1.0 || m["finished_time"] != nil {
		t.Fatalf("show: %v", m)
	}
	_, l := call(s, "tok1", "GET", "/v5/iot/p1/devices/m_n/messages", "")
	if ms := l["messages"].([]any); l["device_id"] != "m_n" || len(ms) != 1 || ms[0].(map[string]any)["message_id"] != "a" {
		t.Fatalf("list: %v", l)
	}
}
