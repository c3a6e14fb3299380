package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

func TestTagAPIs(t *testing.T) {
	s, reg := newTestServer(t)
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p1", ProductID: "m", Name: "Meter", DeviceType: "x", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	// Tags at creation are stored and returned.
	st, out := call(s, "tok1", "POST", "/v5/iot/p1/devices", `{"node_id":"n1","product_id":"m","tags":[{"tag_key":"room","tag_value":"201"},{"tag_key":"vip"}]}`)
	if st != 201 || fmt.Sprint(out["tags"]) != "[map[tag_key:room tag_value:201] map[tag_key:vip]]" {
		t.Fatalf("create: %d %v", st, out)
	}
	if _, out = call(s, "tok1", "GET", "/v5/iot/p1/devices", ""); fmt.Sprint(out["devices"].([]any)[0].(map[string]any)["tags"]) != "[map[tag_key:room tag_value:201] map[tag_key:vip]]" {
		t.Fatalf("list: %v", out)
	}
	// Update replaces them.
	if st, out = call(s, "tok1", "PUT", "/v5/iot/p1/devices/m_n1", `{"tags":[{"tag_key":"room","tag_value":"202"}]}`); st != 200 ||
		fmt.Sprint(out["tags"]) != "[map[tag_key:room tag_value:202]]" {
		t.Fatalf("update: %d %v", st, out)
	}
	for _, tc := range []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"bind", "/v5/iot/p1/tags/bind-resource", `{"resource_type":"device","resource_id":"m_n1","tags":[{"tag_key":"owner","tag_value":"ops"}]}`, 200, ""},
		{"unbind", "/v5/iot/p1/tags/unbind-resource", `{"resource_type":"device","resource_id":"m_n1","tag_keys":["room"]}`, 200, ""},
		{"unbind unknown key", "/v5/iot/p1/tags/unbind-resource", `{"resource_type":"device","resource_id":"m_n1","tag_keys":["room"]}`, 400, codeInvalidInput},
		{"bind to a product", "/v5/iot/p1/tags/bind-resource", `{"resource_type":"product","resource_id":"m","tags":[{"tag_key":"a"}]}`, 400, codeInvalidInput},
		{"bind to no device", "/v5/iot/p1/tags/bind-resource", `{"resource_type":"device","resource_id":"m_zz","tags":[{"tag_key":"a"}]}`, 404, codeDeviceNotFound},
		{"bind a bad key", "/v5/iot/p1/tags/bind-resource", `{"resource_type":"device","resource_id":"m_n1","tags":[{"tag_key":"a b"}]}`, 400, codeInvalidInput},
		{"create with a bad tag", "/v5/iot/p1/devices", `{"node_id":"n2","product_id":"m","tags":[{"tag_value":"v"}]}`, 400, codeInvalidInput},
		{"query without a type", "/v5/iot/p1/tags/query-resources", `{"tags":[{"tag_key":"a"}]}`, 400, codeInvalidInput},
		{"query bad limit", "/v5/iot/p1/tags/query-resources?limit=51", `{"resource_type":"device","tags":[{"tag_key":"a"}]}`, 400, codeLimitRange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := call(s, "tok1", "POST", tc.path, tc.body)
			if st != tc.status || (tc.code != "" && out["error_code"] != tc.code) {
				t.Fatalf("got %d %v, want %d %s", st, out, tc.status, tc.code)
			}
		})
	}
	_, out = call(s, "tok1", "GET", "/v5/iot/p1/devices/m_n1", "")
	if fmt.Sprint(out["tags"]) != "[map[tag_key:owner tag_value:ops]]" {
		t.Fatalf("after bind and unbind: %v", out["tags"])
	}
	st, out = call(s, "tok1", "POST", "/v5/iot/p1/tags/query-resources?limit=10", `{"resource_type":"device","tags":[{"tag_key":"owner","tag_value":"ops"}]}`)
	if st != 200 || fmt.Sprint(out["resources"]) != "[map[resource_id:m_n1]]" || out["page"].(map[string]any)["count"] != 1.0 {
		t.Fatalf("query: %d %v", st, out)
	}
	// Another tenant finds nothing.
	if _, out = call(s, "tok2", "POST", "/v5/iot/p2/tags/query-resources", `{"resource_type":"device","tags":[{"tag_key":"owner"}]}`); len(out["resources"].([]any)) != 0 {
		t.Fatalf("other tenant: %v", out)
	}
}
