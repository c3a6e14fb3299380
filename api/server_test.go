package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/kv/badgerkv"
)

// testRegistry is a registry on an in-memory store of its own, both
// closed with the test.
func testRegistry(t testing.TB) (*registry.Registry, *badgerkv.Store) {
	t.Helper()
	st, err := badgerkv.Open(badgerkv.Options{InMemory: true, Queues: registry.Queues()})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(registry.Options{Store: st, MasterKey: bytes.Repeat([]byte{3}, 32)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close(); st.Close() })
	return reg, st
}

func newTestServer(t testing.TB) (*Server, *registry.Registry) {
	t.Helper()
	reg, _ := testRegistry(t)
	s := New(Options{Registry: reg, Router: reg.Router(), Credentials: []Credential{{ProjectID: "p1", Token: "tok1"}, {ProjectID: "p2", Token: "tok2"}}})
	return s, reg
}

func call(s *Server, token, method, path, body string) (int, map[string]any) {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	var out map[string]any
	_ = json.Unmarshal(rec.Body.Bytes(), &out)
	return rec.Code, out
}

func TestPagingParams(t *testing.T) {
	s, _ := newTestServer(t)
	for _, tc := range []struct {
		query  string
		status int
		code   string
	}{
		{"", 200, ""},
		{"?limit=50&offset=500&marker=ffffffffffffffffffffffff", 200, ""},
		{"?limit=0", 400, codeLimitRange},
		{"?limit=x", 400, codeLimitRange},
		{"?offset=-1", 400, codeInvalidInput},
		{"?marker=0123", 400, codeInvalidInput},
		{"?marker=zzzzzzzzzzzzzzzzzzzzzzzz", 400, codeInvalidInput},
	} {
		st, out := call(s, "tok1", "GET", "/v5/iot/p1/devices"+tc.query, "")
		if st != tc.status || (tc.code != "" && out["error_code"] != tc.code) {
			t.Errorf("%q: got %d %v, want %d %s", tc.query, st, out, tc.status, tc.code)
		}
	}
}

func TestDeviceViewShapes(t *testing.T) {
	s, reg := newTestServer(t)
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p1", ProductID: "m", Name: "Meter", DeviceType: "x", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	st, out := call(s, "tok1", "POST", "/v5/iot/p1/devices", `{"node_id":"n","product_id":"m","auth_info":{"timeout":0}}`)
	if st != 201 {
		t.Fatalf("create: %d %v", st, out)
	}
	// timeout is echoed only when the client set it; create_time is IoTDA's compact form.
	auth := out["auth_info"].(map[string]any)
	if auth["timeout"] != float64(0) || len(out["create_time"].(string)) != len("20151212T121212Z") || out["product_name"] != "Meter" {
		t.Fatalf("shape: %v", out)
	}
	if _, err := reg.Connected(ctx, "m_n"); err != nil {
		t.Fatal(err)
	}
	_, out = call(s, "tok1", "GET", "/v5/iot/p1/devices/m_n", "")
	if out["status"] != "ONLINE" || len(out["active_time"].(string)) != len("2015-12-12T12:12:12.000Z") {
		t.Fatalf("after connect: %v", out)
	}
	// List omits credentials.
	_, out = call(s, "tok1", "GET", "/v5/iot/p1/devices", "")
	if d := out["devices"].([]any)[0].(map[string]any); d["auth_info"] != nil {
		t.Fatalf("list leaks auth_info: %v", d)
	}
	// The other tenant cannot see it.
	if st, _ := call(s, "tok2", "GET", "/v5/iot/p2/devices/m_n", ""); st != http.StatusNotFound {
		t.Fatalf("cross-tenant show: %d", st)
	}
}

func TestCommandsNeedOnlineDevice(t *testing.T) {
	s, reg := newTestServer(t)
	ctx := context.Background()
	_, _ = reg.CreateProduct(ctx, registry.Product{ProjectID: "p1", ProductID: "m", Name: "Meter", DeviceType: "x", ProtocolType: "MQTT"})
	_, _ = reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p1", ProductID: "m", NodeID: "n"})
	for _, tc := range []struct {
		body   string
		status int
		code   string
	}{
		{`{"paras":{"a":1}}`, 403, codeNotOnline},
		{`{"paras":[1]}`, 400, codeInvalidInput},
		{`{}`, 400, codeInvalidInput},
		{`{"paras":{"a":1},"service_id":"` + strings.Repeat("s", 65) + `"}`, 400, codeInvalidInput},
	} {
		st, out := call(s, "tok1", "POST", "/v5/iot/p1/devices/m_n/commands", tc.body)
		if st != tc.status || out["error_code"] != tc.code {
			t.Errorf("%s: got %d %v, want %d %s", tc.body, st, out, tc.status, tc.code)
		}
	}
}

// The body is read once (the signature covers it) with the size the
// request announces, or to its end when it announces none, and refused
// past 2 MB or when it ends early.
func TestRequestBodies(t *testing.T) {
	s, _ := newTestServer(t)
	product := `{"product_id":"pb","name":"pb","device_type":"t","protocol_type":"MQTT","data_format":"json",` +
		`"service_capabilities":[{"service_id":"s","service_type":"s"}]}`
	if st, out := call(s, "tok1", "POST", "/v5/iot/p1/products", product); st != 201 {
		t.Fatalf("product: %d %v", st, out)
	}
	device := `{"node_id":"n1","product_id":"pb"}`
	huge := `{"node_id":"n2","product_id":"pb","description":"` + strings.Repeat("x", 2<<20) + `"}`
	for _, tc := range []struct {
		name   string
		body   string
		length int64 // -1: chunked, no Content-Length
		status int
		code   string
	}{
		{"announced", device, int64(len(device)), 201, ""},
		{"not announced", strings.Replace(device, "n1", "n3", 1), -1, 201, ""},
		{"over 2 MB announced", huge, int64(len(huge)), 413, codeBodyTooLarge},
		{"over 2 MB not announced", huge, -1, 413, codeBodyTooLarge},
		{"shorter than announced", device, int64(len(device)) + 10, 400, codeBadFormat},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/v5/iot/p1/devices", strings.NewReader(tc.body))
			req.ContentLength = tc.length
			req.Header.Set("X-Auth-Token", "tok1")
			rec := httptest.NewRecorder()
			s.ServeHTTP(rec, req)
			var out map[string]any
			_ = json.Unmarshal(rec.Body.Bytes(), &out)
			if rec.Code != tc.status || (tc.code != "" && out["error_code"] != tc.code) {
				t.Fatalf("got %d %v, want %d %s", rec.Code, out, tc.status, tc.code)
			}
		})
	}
}
