package test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestRESTErrors checks that bad input gets IoTDA's status, code and a
// message naming the problem, and writes nothing.
func TestRESTErrors(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.CreateProduct("p1", "MQTT")
	g.CreateProduct("nb", "CoAP")
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "taken", "product_id": "p1"})

	for _, tc := range []struct {
		name, method, path string
		body               any
		status             int
		code, msg          string
	}{
		{"bad json", "POST", "/devices", `{"node_id":`, 400, "IOTDA.000008", "not valid JSON"},
		{"wrong type", "POST", "/devices", `{"node_id":5,"product_id":"p1"}`, 400, "IOTDA.000006", "node_id"},
		{"missing node", "POST", "/devices", map[string]any{"product_id": "p1"}, 400, "IOTDA.000006", "node_id"},
		{"node charset", "POST", "/devices", map[string]any{"product_id": "p1", "node_id": "a b"}, 400, "IOTDA.000006", "node_id"},
		{"node too long", "POST", "/devices", map[string]any{"product_id": "p1", "node_id": strings.Repeat("x", 65)}, 400, "IOTDA.000006", "64"},
		{"unknown product", "POST", "/devices", map[string]any{"product_id": "nope", "node_id": "n"}, 404, "IOTDA.013000", "product"},
		{"duplicate node", "POST", "/devices", map[string]any{"product_id": "p1", "node_id": "taken", "device_id": "x1"}, 400, "IOTDA.014031", "node_id"},
		{"duplicate device", "POST", "/devices", map[string]any{"product_id": "p1", "node_id": "n2", "device_id": "p1_taken"}, 400, "IOTDA.014031", "device_id"},
		{"nb secret not hex", "POST", "/devices", map[string]any{"product_id": "nb", "node_id": "imei1", "auth_info": map[string]any{"secret": "zzzzzzzzzz"}}, 400, "IOTDA.000006", "hexadecimal"},
		{"timeout range", "POST", "/devices", map[string]any{"product_id": "p1", "node_id": "n3", "auth_info": map[string]any{"timeout": 2147483648}}, 400, "IOTDA.000006", "timeout"},
		{"no device", "GET", "/devices/ghost", nil, 404, "IOTDA.014000", "ghost"},
		{"limit range", "GET", "/devices?limit=51", nil, 400, "IOTDA.000017", "limit"},
		{"bad marker", "GET", "/devices?marker=xyz", nil, 400, "IOTDA.000006", "marker"},
		{"offset range", "GET", "/devices?offset=501", nil, 400, "IOTDA.000006", "offset"},
		{"product with devices", "DELETE", "/products/p1", nil, 400, "IOTDA.013008", "devices"},
		{"product missing field", "POST", "/products", map[string]any{"name": "x", "device_type": "y"}, 400, "IOTDA.000006", "protocol_type"},
		{"product bad protocol", "POST", "/products", map[string]any{"name": "x", "device_type": "y", "protocol_type": "ZIGBEE", "service_capabilities": []any{}}, 400, "IOTDA.000006", "protocol_type"},
		{"bad action", "POST", "/devices/p1_taken/action?action_id=explode", `{}`, 400, "IOTDA.000006", "action_id"},
		{"bad secret type", "POST", "/devices/p1_taken/action?action_id=resetSecret", map[string]any{"secret_type": "TERTIARY"}, 400, "IOTDA.000006", "secret_type"},
		{"update secret refused", "PUT", "/devices/p1_taken", map[string]any{"auth_info": map[string]any{"secret": "abcdefgh12"}}, 400, "IOTDA.000006", "resetSecret"},
		{"cert not PEM", "POST", "/certificates", map[string]any{"content": "hello"}, 400, "IOTDA.000006", "PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := g.Do(tc.method, g.P(tc.path), tc.body)
			if st != tc.status || out["error_code"] != tc.code || !strings.Contains(fmt.Sprint(out["error_msg"]), tc.msg) {
				t.Fatalf("got %d %v; want %d %s containing %q", st, out, tc.status, tc.code, tc.msg)
			}
		})
	}
	out := g.MustDo(200, "GET", g.P("/devices"), nil)
	if page := out["page"].(map[string]any); page["count"].(float64) != 1 {
		t.Fatalf("refused requests wrote devices: %v", out)
	}
}

// TestTenantIsolation: a credential reaches only its own project.
func TestTenantIsolation(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.CreateProduct("p1", "MQTT")
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "p1"})
	other := "token-proj2-0123456789"

	// Project 2's token on project 1's paths: 403.
	if st, out := g.DoToken(other, "GET", g.P("/devices/p1_n1"), nil); st != 403 || out["error_code"] != "IOTDA.001002" {
		t.Fatalf("cross-project read: %d %v", st, out)
	}
	// On its own paths it sees nothing of project 1, and cannot use its product.
	if st, out := g.DoToken(other, "GET", "/v5/iot/proj2/devices/p1_n1", nil); st != 404 || out["error_code"] != "IOTDA.014000" {
		t.Fatalf("project 2 sees project 1's device: %d %v", st, out)
	}
	if st, out := g.DoToken(other, "GET", "/v5/iot/proj2/devices", nil); st != 200 || len(out["devices"].([]any)) != 0 {
		t.Fatalf("project 2 lists project 1's devices: %d %v", st, out)
	}
	if st, _ := g.DoToken(other, "POST", "/v5/iot/proj2/devices", map[string]any{"node_id": "x", "product_id": "p1"}); st != 404 {
		t.Fatalf("project 2 created a device under project 1's product: %d", st)
	}
	if st, _ := g.DoToken(other, "DELETE", "/v5/iot/proj2/devices/p1_n1", nil); st != 404 {
		t.Fatalf("project 2 deleted project 1's device: %d", st)
	}
	// No or unknown credentials.
	if st, out := g.DoToken("", "GET", g.P("/devices"), nil); st != 401 || out["error_code"] != "IOTDA.000002" {
		t.Fatalf("no credentials: %d %v", st, out)
	}
	if st, out := g.DoToken("forged", "GET", g.P("/devices"), nil); st != 403 || out["error_code"] != "IOTDA.000004" {
		t.Fatalf("unknown token: %d %v", st, out)
	}
	g.MustDo(200, "GET", g.P("/devices/p1_n1"), nil)
}

// TestDeviceLifecycleREST walks the device APIs with the token.
func TestDeviceLifecycleREST(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.CreateProduct("p1", "MQTT")
	d := g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "p1", "device_name": "first",
		"extension_info": map[string]any{"k": "v"}})
	auth := d["auth_info"].(map[string]any)
	if auth["secure_access"] != true || len(auth["secret"].(string)) != 32 || auth["auth_type"] != "SECRET" {
		t.Fatalf("defaults: %v", auth)
	}
	u := g.MustDo(200, "PUT", g.P("/devices/p1_n1"), map[string]any{"device_name": "renamed", "auth_info": map[string]any{"secure_access": false}})
	if u["device_name"] != "renamed" || u["auth_info"].(map[string]any)["secure_access"] != false {
		t.Fatalf("update: %v", u)
	}
	r := g.MustDo(200, "POST", g.P("/devices/p1_n1/action?action_id=resetSecret"), map[string]any{"secret_type": "SECONDARY"})
	if r["secret_type"] != "SECONDARY" || len(r["secret"].(string)) != 32 {
		t.Fatalf("reset secondary: %v", r)
	}
	s := g.MustDo(200, "GET", g.P("/devices/p1_n1"), nil)
	if s["auth_info"].(map[string]any)["secondary_secret"] != r["secret"] {
		t.Fatalf("secondary secret not stored: %v", s)
	}
	g.MustDo(204, "POST", g.P("/devices/p1_n1/freeze"), nil)
	if s := g.MustDo(200, "GET", g.P("/devices/p1_n1"), nil); s["status"] != "FROZEN" {
		t.Fatalf("freeze: %v", s)
	}
	g.MustDo(204, "POST", g.P("/devices/p1_n1/unfreeze"), nil)
	if s := g.MustDo(200, "GET", g.P("/devices/p1_n1"), nil); s["status"] != "INACTIVE" {
		t.Fatalf("unfreeze: %v", s)
	}
	g.MustDo(204, "DELETE", g.P("/devices/p1_n1"), nil)
	g.MustDo(204, "DELETE", g.P("/products/p1"), nil)
	g.MustDo(404, "GET", g.P("/products/p1"), nil)
}

// TestExpiryAcrossRestart: a device that never connects is deleted on
// time, and one whose deadline passed while iotgate was down is gone as
// soon as it is back.
func TestExpiryAcrossRestart(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.CreateProduct("p1", "MQTT")
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "short", "product_id": "p1", "auth_info": map[string]any{"timeout": 2}})
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "down", "product_id": "p1", "auth_info": map[string]any{"timeout": 4}})
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "keep", "product_id": "p1", "auth_info": map[string]any{"timeout": 0}})
	g.MustDo(200, "GET", g.P("/devices/p1_short"), nil)

	deadline := time.Now().Add(5 * time.Second)
	for {
		st, _ := g.Do("GET", g.P("/devices/p1_short"), nil)
		if st == 404 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("device with timeout 2 s still there after 5 s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	g.MustDo(200, "GET", g.P("/devices/p1_down"), nil)
	g.Stop()
	time.Sleep(4 * time.Second) // p1_down's deadline passes while we are down
	g.Restart()
	g.MustDo(404, "GET", g.P("/devices/p1_down"), nil)
	g.MustDo(200, "GET", g.P("/devices/p1_keep"), nil)
	// Its node id is free again.
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "down", "product_id": "p1"})
}

// TestKillDuringCreateBurst: kill -9 in the middle of concurrent creates
// loses none that were acknowledged, and the indexes agree with the
// records afterwards.
func TestKillDuringCreateBurst(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.CreateProduct("p1", "MQTT")
	var acked sync.Map
	var nAcked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second, Transport: g.checked(nil)}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < 5000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				node := fmt.Sprintf("w%02d-%05d", w, i)
				body := fmt.Sprintf(`{"node_id":%q,"product_id":"p1"}`, node)
				req, _ := http.NewRequest("POST", g.API+g.P("/devices"), strings.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Auth-Token", g.Token)
				resp, err := client.Do(req)
				if err != nil {
					return // the server is gone
				}
				resp.Body.Close()
				if resp.StatusCode == 201 {
					acked.Store(node, true)
					nAcked.Add(1)
				}
			}
		}(w)
	}
	for nAcked.Load() < 300 {
		time.Sleep(10 * time.Millisecond)
	}
	g.Kill()
	close(stop)
	wg.Wait()
	g.Restart()

	acked.Range(func(k, _ any) bool {
		if st, out := g.Do("GET", g.P("/devices/p1_"+k.(string)), nil); st != 200 {
			t.Errorf("acknowledged device %s lost after kill -9: %d %v", k, st, out)
		}
		return true
	})
	// Every listed device opens, and the count is the number listed.
	var listed int
	marker := ""
	for {
		path := "/devices?limit=50"
		if marker != "" {
			path += "&marker=" + marker
		}
		out := g.MustDo(200, "GET", g.P(path), nil)
		devs := out["devices"].([]any)
		for _, d := range devs {
			id := d.(map[string]any)["device_id"].(string)
			g.MustDo(200, "GET", g.P("/devices/"+id), nil)
		}
		listed += len(devs)
		if len(devs) < 50 {
			out := g.MustDo(200, "GET", g.P("/devices?limit=1"), nil)
			if c := int(out["page"].(map[string]any)["count"].(float64)); c != listed {
				t.Fatalf("count %d but %d devices listed", c, listed)
			}
			break
		}
		marker = out["page"].(map[string]any)["marker"].(string)
	}
	if int64(listed) < nAcked.Load() {
		t.Fatalf("listed %d < acknowledged %d", listed, nAcked.Load())
	}
	t.Logf("acknowledged %d, stored %d (the difference: written but not yet acknowledged when killed)", nAcked.Load(), listed)
}
