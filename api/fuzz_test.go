package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

// fuzzRoutes are the endpoints whose request bodies come from clients.
var fuzzRoutes = []struct{ method, path, contentType string }{
	{"POST", "/v5/iot/p1/products", "application/json"},
	{"PUT", "/v5/iot/p1/products/meter", "application/json"},
	{"POST", "/v5/iot/p1/devices", "application/json"},
	{"PUT", "/v5/iot/p1/devices/meter_dev1", "application/json"},
	{"POST", "/v5/iot/p1/devices/meter_dev1/async-commands", "application/json"},
	{"POST", "/v5/iot/p1/devices/meter_dev1/messages", "application/json"},
	{"POST", "/v5/iot/p1/banned", "application/json"},
	{"POST", "/auth/register/device", "application/x-www-form-urlencoded"},
}

// FuzzRESTBodies drives the REST handlers in-process with any body: the
// answer is never a server error, and every refusal is an IoTDA error
// object naming its code.
func FuzzRESTBodies(f *testing.F) {
	for _, s := range []struct {
		route uint8
		body  string
	}{
		{0, `{"name":"Meter","device_type":"WaterMeter","protocol_type":"MQTT","data_format":"json","service_capabilities":[{"service_id":"WaterMeter","properties":[{"property_name":"level","data_type":"int"}]}]}`},
		{1, `{"name":"Meter2","description":"d"}`},
		{2, `{"node_id":"dev2","product_id":"meter","device_name":"d2","auth_info":{"auth_type":"SECRET","secret":"0123456789abcdef","secure_access":true}}`},
		{2, `{"node_id":"dev3","product_id":"meter","auth_info":{"auth_type":"CERTIFICATES","fingerprint":"zz"}}`},
		{3, `{"device_name":"renamed","description":"x","extension_info":{"a":1}}`},
		{4, `{"service_id":"WaterMeter","command_name":"ON","paras":{"level":3},"expire_time":3600,"send_strategy":"delay"}`},
		{5, `{"message_id":"m1","name":"n","message":{"hello":"world"},"topic_full_name":"$oc/devices/meter_dev1/user/x"}`},
		{5, `{"message":"aGVsbG8=","payload_format":"raw"}`},
		{6, `{"kind":"address","value":"192.0.2.1","ttl":60}`},
		{7, "productKey=meter&deviceName=dev1&random=8Ygb7ULYh53B6OA&signMethod=hmacsha256&sign=1D7772FF22CC93AC220B4289323476655315B27CC92C9072527BA39FE40763D6"},
		{2, `{"node_id":"` + strings.Repeat("x", 300) + `"}`},
		{4, `{"paras":` + strings.Repeat("[", 200) + `}`},
		{0, ``}, {2, `null`}, {3, `[]`}, {5, `{"message":1e999}`},
	} {
		f.Add(s.route, []byte(s.body))
	}
	s, reg := newTestServer(f)
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p1", ProductID: "meter", Name: "Meter",
		DeviceType: "WaterMeter", ProtocolType: "MQTT", ProductSecret: "prodSecretABC"}); err != nil {
		f.Fatal(err)
	}
	if _, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p1", ProductID: "meter", NodeID: "dev1"}); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		req := httptest.NewRequest(r.method, r.path, strings.NewReader(string(body)))
		req.Header.Set("X-Auth-Token", "tok1")
		req.Header.Set("Content-Type", r.contentType)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", r.method, r.path, body, rec.Code, rec.Body)
		}
		if rec.Code >= 400 && r.path != "/auth/register/device" {
			var e struct {
				Code string `json:"error_code"`
				Msg  string `json:"error_msg"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Code == "" || e.Msg == "" {
				t.Fatalf("%s %s %q: %d with body %s, not an IoTDA error", r.method, r.path, body, rec.Code, rec.Body)
			}
		}
		if rec.Code == http.StatusOK || rec.Code == http.StatusCreated {
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("%s %s: %d with invalid JSON %s", r.method, r.path, rec.Code, rec.Body)
			}
		}
	})
}
