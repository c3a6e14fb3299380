package api

import (
	"context"
	"fmt"
	"testing"

	"github.com/iotgate/iotgate/registry"
)

func TestDeviceGroupAPIs(t *testing.T) {
	s, reg := newTestServer(t)
	ctx := context.Background()
	if _, err := reg.CreateProduct(ctx, registry.Product{ProjectID: "p1", ProductID: "m", Name: "Meter", DeviceType: "x", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"n1", "n2"} {
		if _, err := reg.CreateDevice(ctx, registry.NewDevice{ProjectID: "p1", ProductID: "m", NodeID: n, DeviceName: "dev " + n}); err != nil {
			t.Fatal(err)
		}
	}
	st, g := call(s, "tok1", "POST", "/v5/iot/p1/device-group", `{"name":"east","description":"east wing"}`)
	if st != 201 || g["name"] != "east" || g["group_type"] != "STATIC" || g["group_id"] == "" {
		t.Fatalf("create: %d %v", st, g)
	}
	id := g["group_id"].(string)
	st, sub := call(s, "tok1", "POST", "/v5/iot/p1/device-group", fmt.Sprintf(`{"name":"east 2","super_group_id":%q}`, id))
	if st != 201 || sub["super_group_id"] != id {
		t.Fatalf("create a sub-group: %d %v", st, sub)
	}
	base := "/v5/iot/p1/device-group/" + id
	for _, tc := range []struct {
		name, method, path, body string
		status                   int
		code                     string
	}{
		{"add", "POST", base + "/action?action_id=addDevice&device_id=m_n1", "", 200, ""},
		{"add another", "POST", base + "/action?action_id=addDevice&device_id=m_n2", "", 200, ""},
		{"add again", "POST", base + "/action?action_id=addDevice&device_id=m_n2", "", 200, ""},
		{"add no device", "POST", base + "/action?action_id=addDevice&device_id=m_zz", "", 404, codeDeviceNotFound},
		{"unknown action", "POST", base + "/action?action_id=moveDevice&device_id=m_n1", "", 400, codeInvalidInput},
		{"no device_id", "POST", base + "/action?action_id=addDevice", "", 400, codeInvalidInput},
		{"no group", "POST", "/v5/iot/p1/device-group/0123456789abcdef01234567/action?action_id=addDevice&device_id=m_n1", "", 404, codeGroupNotFound},
		{"bad group id", "GET", "/v5/iot/p1/device-group/xyz", "", 400, codeInvalidInput},
		{"name taken", "POST", "/v5/iot/p1/device-group", `{"name":"east"}`, 400, codeGroupExists},
		{"no name", "POST", "/v5/iot/p1/device-group", `{"description":"x"}`, 400, codeInvalidInput},
		{"dynamic", "POST", "/v5/iot/p1/device-group", `{"name":"d","group_type":"DYNAMIC","dynamic_group_rule":"product_id = 'm'"}`, 400, codeInvalidInput},
		{"has sub-groups", "DELETE", base, "", 400, codeHasSubGroups},
		{"other project", "GET", "/v5/iot/p2/device-group/" + id, "", 404, codeGroupNotFound},
		{"bad last_modified_time", "GET", "/v5/iot/p1/device-group?last_modified_time=yesterday", "", 400, codeInvalidInput},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := "tok1"
			if tc.name == "other project" {
				token = "tok2"
			}
			st, out := call(s, token, tc.method, tc.path, tc.body)
			if st != tc.status || (tc.code != "" && out["error_code"] != tc.code) {
				t.Fatalf("got %d %v, want %d %s", st, out, tc.status, tc.code)
			}
		})
	}
	st, out := call(s, "tok1", "GET", base+"/devices?limit=1", "")
	if st != 200 || fmt.Sprint(out["devices"]) != "[map[device_id:m_n2 device_name:dev n2 node_id:n2 product_id:m]]" ||
		out["page"].(map[string]any)["count"] != 2.0 {
		t.Fatalf("members: %d %v", st, out)
	}
	marker := out["page"].(map[string]any)["marker"].(string)
	if _, out = call(s, "tok1", "GET", base+"/devices?marker="+marker, ""); fmt.Sprint(out["devices"]) != "[map[device_id:m_n1 device_name:dev n1 node_id:n1 product_id:m]]" {
		t.Fatalf("members after the marker: %v", out)
	}
	if st, _ = call(s, "tok1", "POST", base+"/action?action_id=removeDevice&device_id=m_n1", ""); st != 200 {
		t.Fatalf("remove: %d", st)
	}
	if st, out = call(s, "tok1", "PUT", base, `{"name":"west"}`); st != 200 || out["name"] != "west" || out["description"] != "east wing" {
		t.Fatalf("update: %d %v", st, out)
	}
	st, out = call(s, "tok1", "GET", "/v5/iot/p1/device-group?limit=1", "")
	if st != 200 || out["page"].(map[string]any)["count"] != 2.0 || len(out["device_groups"].([]any)) != 1 ||
		out["device_groups"].([]any)[0].(map[string]any)["name"] != "east 2" {
		t.Fatalf("list: %d %v", st, out)
	}
	if _, out = call(s, "tok1", "GET", "/v5/iot/p1/device-group?group_type=DYNAMIC", ""); len(out["device_groups"].([]any)) != 0 {
		t.Fatalf("dynamic groups listed: %v", out)
	}
	if _, out = call(s, "tok1", "GET", "/v5/iot/p1/device-group?name=west", ""); fmt.Sprint(out["device_groups"]) != fmt.Sprintf("[map[description:east wing group_id:%s group_type:STATIC name:west]]", id) {
		t.Fatalf("list by name: %v", out)
	}
	if st, _ = call(s, "tok1", "DELETE", "/v5/iot/p1/device-group/"+sub["group_id"].(string), ""); st != 204 {
		t.Fatalf("delete the sub-group: %d", st)
	}
	if st, _ = call(s, "tok1", "DELETE", base, ""); st != 204 {
		t.Fatalf("delete: %d", st)
	}
	if st, _ = call(s, "tok1", "GET", base, ""); st != 404 {
		t.Fatalf("deleted group shown: %d", st)
	}
	if st, _ = call(s, "tok1", "GET", "/v5/iot/p1/devices/m_n2", ""); st != 200 {
		t.Fatalf("a member went with its group: %d", st)
	}
}
