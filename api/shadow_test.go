package api

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

func TestShadowAPIs(t *testing.T) {
	s, reg := newTestServer(t)
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p1", ProductID: "m", Name: "Meter", DeviceType: "x", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p1", ProductID: "m", NodeID: "n"}); err != nil {
		t.Fatal(err)
	}
	if err := reg.ReportProperties(ctx, "m_n", []registry.ServiceProperties{{ServiceID: "Meter",
		Properties: map[string]json.RawMessage{"limit": json.RawMessage("3"), "v": json.RawMessage("220")}}}); err != nil {
		t.Fatal(err)
	}
	path := "/v5/iot/p1/devices/m_n/shadow"
	st, out := call(s, "tok1", "PUT", path, `{"shadow":[{"service_id":"Meter","desired":{"limit":5,"v":220},"version":0}]}`)
	if st != 200 || out["device_id"] != "m_n" {
		t.Fatalf("update: %d %v", st, out)
	}
	_, out = call(s, "tok1", "GET", path, "")
	sv := out["shadow"].([]any)[0].(map[string]any)
	if sv["service_id"] != "Meter" || sv["version"] != 1.0 ||
		sv["desired"].(map[string]any)["properties"].(map[string]any)["limit"] != 5.0 ||
		sv["reported"].(map[string]any)["properties"].(map[string]any)["limit"] != 3.0 ||
		len(sv["desired"].(map[string]any)["event_time"].(string)) != len("20151212T121212Z") {
		t.Fatalf("show: %v", out)
	}
	if d := sv["delta"].(map[string]any); len(d) != 1 || d["limit"] != 5.0 {
		t.Fatalf("delta %v, want only limit", d)
	}
	for _, tc := range []struct {
		name, body string
		status     int
		code       string
	}{
		{"stale version", `{"shadow":[{"service_id":"Meter","desired":{"limit":6},"version":0}]}`, 409, codeShadowVersion},
		{"no shadow", `{}`, 400, codeInvalidInput},
		{"desired null", `{"shadow":[{"service_id":"Meter","desired":null}]}`, 400, codeInvalidInput},
		{"desired not an object", `{"shadow":[{"service_id":"Meter","desired":[1]}]}`, 400, codeInvalidInput},
		{"no service_id", `{"shadow":[{"desired":{}}]}`, 400, codeInvalidInput},
		{"bad property name", `{"shadow":[{"service_id":"Meter","desired":{"a.b":1}}]}`, 400, codeInvalidInput},
		{"not JSON", `{"shadow":`, 400, codeBadFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := call(s, "tok1", "PUT", path, tc.body)
			if st != tc.status || out["error_code"] != tc.code {
				t.Fatalf("got %d %v, want %d %s", st, out, tc.status, tc.code)
			}
		})
	}
	if st, out := call(s, "tok2", "PUT", "/v5/iot/p2/devices/m_n/shadow", `{"shadow":[{"service_id":"Meter","desired":{}}]}`); st != 404 || out["error_code"] != codeDeviceNotFound {
		t.Fatalf("other tenant: %d %v", st, out)
	}
	// Reported reaches desired: no delta left.
	if err := reg.ReportProperties(ctx, "m_n", []registry.ServiceProperties{{ServiceID: "Meter",
		Properties: map[string]json.RawMessage{"limit": json.RawMessage("5")}}}); err != nil {
		t.Fatal(err)
	}
	_, out = call(s, "tok1", "GET", path, "")
	if sv := out["shadow"].([]any)[0].(map[string]any); sv["delta"] != nil {
		t.Fatalf("delta after the report reached it: %v", sv)
	}
}
