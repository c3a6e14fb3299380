package api

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// propsDevice answers properties requests as a device would: with what
// answer returns, or not at all (nil) until the request's time is up.
type propsDevice struct {
	got    []registry.PropertiesRequest
	answer func(registry.PropertiesRequest) json.RawMessage
}

func (p *propsDevice) SendProperties(ctx context.Context, _ *registry.Device, r registry.PropertiesRequest) (json.RawMessage, error) {
	p.got = append(p.got, r)
	if b := p.answer(r); b != nil {
		return b, nil
	}
	<-ctx.Done()
	return nil, registry.ErrTimeout
}

func TestPropertyAPIs(t *testing.T) {
	reg, _ := testRegistry(t)
	dev := &propsDevice{answer: func(r registry.PropertiesRequest) json.RawMessage {
		if r.ServiceID == "Silent" {
			return nil
		}
		return json.RawMessage(`{"services":[{"service_id":"Meter","properties":{"v":1}}]}`)
	}}
	if err := reg.Router().Register(registry.Adapter{Protocol: registry.ProtocolMQTT, Properties: dev}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Registry: reg, Router: reg.Router(), CommandTimeout: 200 * time.Millisecond,
		Credentials: []Credential{{ProjectID: "p1", Token: "tok1"}}})
	ctx := context.Background()
	for _, p := range []registry.Product{
		{ProjectID: "p1", ProductID: "m", Name: "Meter", DeviceType: "x", ProtocolType: "MQTT"},
		{ProjectID: "p1", ProductID: "nb", Name: "NB", DeviceType: "x", ProtocolType: "CoAP"},
	} {
		if _, err := reg.CreateProduct(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []registry.NewDevice{{ProjectID: "p1", ProductID: "m", NodeID: "on"},
		{ProjectID: "p1", ProductID: "m", NodeID: "off"}, {ProjectID: "p1", ProductID: "nb", NodeID: "imei1"}} {
		if _, err := reg.CreateDevice(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := reg.Connected(ctx, "m_on"); err != nil {
		t.Fatal(err)
	}
	set := `{"services":[{"service_id":"Meter","properties":{"limit":5}}]}`
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"get", "GET", "/v5/iot/p1/devices/m_on/properties?service_id=Meter", "", 200, ""},
		{"set", "PUT", "/v5/iot/p1/devices/m_on/properties", set, 200, ""},
		{"device silent", "GET", "/v5/iot/p1/devices/m_on/properties?service_id=Silent", "", 200, codeCmdTimeout},
		{"offline", "GET", "/v5/iot/p1/devices/m_off/properties?service_id=Meter", "", 403, codeNotOnline},
		{"NB-IoT", "PUT", "/v5/iot/p1/devices/nb_imei1/properties", set, 400, codeInvalidInput},
		{"no such device", "GET", "/v5/iot/p1/devices/m_zz/properties?service_id=Meter", "", 404, codeDeviceNotFound},
		{"no service_id", "GET", "/v5/iot/p1/devices/m_on/properties", "", 400, codeInvalidInput},
		{"long service_id", "GET", "/v5/iot/p1/devices/m_on/properties?service_id=" + strings.Repeat("s", 65), "", 400, codeInvalidInput},
		{"no services", "PUT", "/v5/iot/p1/devices/m_on/properties", `{}`, 400, codeInvalidInput},
		{"empty services", "PUT", "/v5/iot/p1/devices/m_on/properties", `{"services":[]}`, 400, codeInvalidInput},
		{"services not objects", "PUT", "/v5/iot/p1/devices/m_on/properties", `{"services":[1]}`, 400, codeInvalidInput},
		{"properties not an object", "PUT", "/v5/iot/p1/devices/m_on/properties", `{"services":[{"service_id":"a","properties":[1]}]}`, 400, codeInvalidInput},
		{"service_id not a string", "PUT", "/v5/iot/p1/devices/m_on/properties", `{"services":[{"service_id":1}]}`, 400, codeInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := call(s, "tok1", tc.method, tc.path, tc.body)
			if st != tc.status || (tc.code != "" && out["error_code"] != tc.code) || (tc.code == "" && out["error_code"] != nil) {
				t.Fatalf("got %d %v, want %d %s", st, out, tc.status, tc.code)
			}
			if st == 200 && (len(out["request_id"].(string)) == 0) {
				t.Fatalf("no request_id: %v", out)
			}
			if tc.code == "" && out["response"].(map[string]any)["services"] == nil {
				t.Fatalf("device's response not passed through: %v", out)
			}
		})
	}
	// What reached the device: the get named its service, the set carried
	// the services as given; nothing reached it for the refused requests.
	if len(dev.got) != 3 || dev.got[0].Op != registry.PropertiesGet || dev.got[0].ServiceID != "Meter" ||
		dev.got[1].Op != registry.PropertiesSet || string(dev.got[1].Services) != `[{"service_id":"Meter","properties":{"limit":5}}]` ||
		dev.got[0].RequestID == dev.got[1].RequestID {
		t.Fatalf("device got %+v", dev.got)
	}
}
