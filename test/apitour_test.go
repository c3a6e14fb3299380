package test

import (
	"slices"
	"strings"
	"testing"
)

// TestAPITour exercises every operation of the OpenAPI description once
// against the real binary, through the gate's checked client, so that
// each one's description is held to a real answer even where no other
// test calls it. It fails when the description has an operation the tour
// does not call: a new route needs a line here (most answer success; a
// few, whose success needs a device online, answer their error).
func TestAPITour(t *testing.T) {
	g := StartGate(t, GateOptions{})
	for _, p := range []string{"/healthz", "/openapi.json"} {
		resp, err := g.HTTP().Get(g.API + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	// Products.
	g.aliProduct("tour", "tourSecret01", true, false, "")
	g.MustDo(200, "GET", g.P("/products?limit=5"), nil)
	g.MustDo(200, "GET", g.P("/products/tour"), nil)
	g.MustDo(200, "PUT", g.P("/products/tour"), map[string]any{"description": "touring", "industry": "test"})
	secret := g.MustDo(200, "POST", g.P("/products/tour/reset-secret"), nil)["product_secret"].(string)

	// Devices.
	id := g.aliDevice("tour", "d1", "0123456789abcdef", false)
	g.MustDo(200, "GET", g.P("/devices?product_id=tour&limit=5"), nil)
	g.MustDo(200, "GET", g.P("/devices/"+id), nil)
	g.MustDo(200, "PUT", g.P("/devices/"+id), map[string]any{"device_name": "Touring", "extension_info": map[string]any{"k": "v"},
		"auth_info": map[string]any{"timeout": 0}, "tags": []map[string]any{{"tag_key": "site", "tag_value": "north"}}})
	g.MustDo(200, "POST", g.P("/devices/"+id+"/action?action_id=resetSecret"), map[string]any{"secret_type": "SECONDARY"})
	g.MustDo(200, "POST", g.P("/devices/"+id+"/action?action_id=resetThing"), nil)
	g.MustDo(204, "POST", g.P("/devices/"+id+"/freeze"), nil)
	g.MustDo(204, "POST", g.P("/devices/"+id+"/unfreeze"), nil)
	g.MustDo(200, "GET", g.P("/devices/"+id+"/client-ids"), nil)
	g.MustDo(404, "POST", g.P("/devices/"+id+"/client-ids/none/keep"), nil) // its success: TestAliPreregistrationFreeE2E
	g.MustDo(200, "DELETE", g.P("/devices/"+id+"/client-ids"), nil)
	tags := []map[string]any{{"tag_key": "site", "tag_value": "south"}, {"tag_key": "楼层"}}
	x509 := g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "x1", "product_id": "tour", "tags": tags,
		"auth_info": map[string]any{"auth_type": "CERTIFICATES", "fingerprint": strings.Repeat("ab", 20)}})["device_id"].(string)
	g.MustDo(200, "POST", g.P("/devices/"+x509+"/reset-fingerprint"), map[string]any{"fingerprint": strings.Repeat("cd", 32),
		"fingerprint_type": "SECONDARY"})
	if out := g.httpsRegister("tour", "d2", secret); out["code"] != 6100.0 { // d2 does not exist
		t.Errorf("register an unknown device: %v", out)
	}

	// Tags.
	g.MustDo(200, "POST", g.P("/tags/bind-resource"), map[string]any{"resource_type": "device", "resource_id": id,
		"tags": []map[string]any{{"tag_key": "owner", "tag_value": "ops"}}})
	g.MustDo(200, "POST", g.P("/tags/unbind-resource"), map[string]any{"resource_type": "device", "resource_id": id,
		"tag_keys": []string{"owner"}})
	if found := g.MustDo(200, "POST", g.P("/tags/query-resources?limit=5"), map[string]any{"resource_type": "device",
		"tags": []map[string]any{{"tag_key": "site"}}})["resources"].([]any); len(found) != 2 {
		t.Errorf("devices tagged site: %v", found)
	}

	// Device groups.
	grp := g.MustDo(201, "POST", g.P("/device-group"), map[string]any{"name": "tour group"})["group_id"].(string)
	g.MustDo(200, "GET", g.P("/device-group?limit=5"), nil)
	g.MustDo(200, "GET", g.P("/device-group/"+grp), nil)
	g.MustDo(200, "PUT", g.P("/device-group/"+grp), map[string]any{"description": "touring"})
	g.MustDo(200, "POST", g.P("/device-group/"+grp+"/action?action_id=addDevice&device_id="+id), nil)
	g.MustDo(200, "GET", g.P("/device-group/"+grp+"/devices?limit=5"), nil)
	g.MustDo(200, "POST", g.P("/device-group/"+grp+"/action?action_id=removeDevice&device_id="+id), nil)
	g.MustDo(204, "DELETE", g.P("/device-group/"+grp), nil)

	// Batch tasks (the whole story: TestBatchCreateDevicesSurvivesKill).
	file := g.uploadBatchFile("tour.csv", "device_id\n"+id+"\n", 201)["file_id"].(string)
	g.MustDo(200, "GET", g.P("/batchtask-files"), nil)
	task := g.MustDo(201, "POST", g.P("/batchtasks"), map[string]any{"task_name": "tour", "task_type": "unfreezeDevices",
		"document_source": file})["task_id"].(string)
	g.MustDo(200, "GET", g.P("/batchtasks?task_type=unfreezeDevices&limit=5"), nil)
	g.waitBatchTask(task, "Success")
	g.MustDo(400, "POST", g.P("/batchtasks/"+task+"/stop"), nil) // ended; its success: registry/batchtask's TestStop
	// Retry is for firmwareUpgrade tasks (its success: TestBatchFirmwareUpgrade).
	g.MustDo(400, "POST", g.P("/batchtasks/"+task+"/retry"), map[string]any{})
	g.MustDo(204, "DELETE", g.P("/batchtasks/"+task), nil)
	g.MustDo(204, "DELETE", g.P("/batchtask-files/"+file), nil)

	// Device data, commands and messages (the device is offline).
	g.MustDo(200, "PUT", g.P("/devices/"+id+"/shadow"), map[string]any{"shadow": []map[string]any{{"service_id": "Basic",
		"desired": map[string]any{"limit": 5}, "version": 0}}})
	g.MustDo(409, "PUT", g.P("/devices/"+id+"/shadow"), map[string]any{"shadow": []map[string]any{{"service_id": "Basic",
		"desired": map[string]any{"limit": 6}, "version": 0}}}) // version 0 is stale now
	g.MustDo(200, "GET", g.P("/devices/"+id+"/shadow"), nil)
	g.MustDo(403, "GET", g.P("/devices/"+id+"/properties?service_id=Basic"), nil) // its success: TestPropertiesWithHuaweiSDK
	g.MustDo(403, "PUT", g.P("/devices/"+id+"/properties"), map[string]any{"services": []map[string]any{{"service_id": "Basic",
		"properties": map[string]any{"limit": 5}}}})
	g.MustDo(200, "GET", g.P("/devices/"+id+"/device-messages?limit=5"), nil)
	g.MustDo(403, "POST", g.P("/devices/"+id+"/commands"), map[string]any{"service_id": "Basic", "command_name": "ping",
		"paras": map[string]any{}}) // its success: TestMQTTInteropCommand
	msg := g.MustDo(201, "POST", g.P("/devices/"+id+"/messages"), map[string]any{"message": "hello", "ttl": 5})["message_id"].(string)
	g.MustDo(200, "GET", g.P("/devices/"+id+"/messages"), nil)
	g.MustDo(200, "GET", g.P("/devices/"+id+"/messages/"+msg), nil)
	g.CreateProduct("tournb", "CoAP")
	nb := g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "tour-nb1", "product_id": "tournb",
		"auth_info": map[string]any{"secret": pskSecret}})["device_id"].(string)
	cmd := g.MustDo(201, "POST", g.P("/devices/"+nb+"/async-commands"), map[string]any{"service_id": "Basic",
		"command_name": "READ", "paras": map[string]any{"path": "/3/0/0"}})["command_id"].(string)
	g.MustDo(200, "GET", g.P("/devices/"+nb+"/async-commands?status=PENDING"), nil)
	g.MustDo(200, "GET", g.P("/devices/"+nb+"/async-commands/"+cmd), nil)

	// OTA packages (upgrades run in lwm2m's TestFirmware* and, with
	// Wakaama, in TestLwM2MInteropWakaamaFirmware).
	pkg := g.uploadPackage(201, map[string]any{"package_type": "firmwarePackage", "product_id": "tournb", "version": "V1.1"},
		[]byte("tour firmware image"))["package_id"].(string)
	g.MustDo(200, "GET", g.P("/ota-upgrades/packages?package_type=firmwarePackage&product_id=tournb&limit=5"), nil)
	g.MustDo(200, "GET", g.P("/ota-upgrades/packages/"+pkg), nil)
	g.MustDo(204, "DELETE", g.P("/ota-upgrades/packages/"+pkg), nil)

	// Device CA certificates.
	caKey, ca := newCert(t, "Tour CA", nil, nil)
	up := g.MustDo(201, "POST", g.P("/certificates"), map[string]any{"content": pemCert(ca)})
	cert := up["certificate_id"].(string)
	_, proof := newCert(t, up["verify_code"].(string), ca, caKey)
	g.MustDo(200, "POST", g.P("/certificates/"+cert+"/action?action_id=verify"), map[string]any{"verify_content": pemCert(proof)})
	g.MustDo(200, "GET", g.P("/certificates"), nil)
	g.MustDo(200, "GET", g.P("/certificates/"+cert), nil)
	g.MustDo(204, "DELETE", g.P("/certificates/"+cert), nil)

	// The event stream.
	g.MustDo(200, "PUT", g.P("/event-consumers/tour"), nil)
	next := g.MustDo(200, "GET", g.P("/events?limit=10"), nil)["next_cursor"].(string)
	g.MustDo(200, "POST", g.P("/event-consumers/tour/ack"), map[string]any{"cursor": next})
	g.MustDo(200, "GET", g.P("/event-consumers/tour"), nil)
	g.MustDo(204, "DELETE", g.P("/event-consumers/tour"), nil)

	// Bans and the cluster.
	g.MustDo(201, "POST", g.P("/banned"), map[string]any{"type": "address", "value": "192.0.2.0/24", "reason": "tour", "duration": 60})
	g.MustDo(200, "GET", g.P("/banned?type=address"), nil)
	g.MustDo(204, "DELETE", g.P("/banned?type=address&value=192.0.2.0/24"), nil)
	g.MustDo(200, "GET", g.P("/cluster/nodes"), nil)

	// Data forwarding (to a port nothing listens on: the actions only
	// retry).
	rule := g.MustDo(201, "POST", g.P("/routing-rule/rules"), map[string]any{"rule_name": "tour rule",
		"subject": map[string]any{"resource": "device.property", "event": "report"}, "app_type": "GLOBAL",
		"where": "notify_data.header.product_id = 'tour'"})["rule_id"].(string)
	g.MustDo(200, "GET", g.P("/routing-rule/rules?resource=device.property&active=false"), nil)
	g.MustDo(200, "GET", g.P("/routing-rule/rules/"+rule), nil)
	g.MustDo(200, "PUT", g.P("/routing-rule/rules/"+rule), map[string]any{"description": "touring", "active": true})
	action := g.MustDo(201, "POST", g.P("/routing-rule/actions"), map[string]any{"rule_id": rule, "channel": "HTTP_FORWARDING",
		"channel_detail": map[string]any{"http_forwarding": map[string]any{"url": "http://127.0.0.1:9/push",
			"signature_enable": true, "token": "tourToken1"}}})["action_id"].(string)
	g.MustDo(200, "GET", g.P("/routing-rule/actions?rule_id="+rule), nil)
	g.MustDo(200, "GET", g.P("/routing-rule/actions/"+action), nil)
	g.MustDo(200, "PUT", g.P("/routing-rule/actions/"+action), map[string]any{"channel": "NATS_FORWARDING",
		"channel_detail": map[string]any{"nats_forwarding": map[string]any{"url": "nats://127.0.0.1:9", "subject": "iot.tour"}}})
	policy := g.MustDo(201, "POST", g.P("/routing-rule/flowcontrol-policy"), map[string]any{"policy_name": "tour",
		"scope": "RULE", "scope_value": rule, "limit": 50})["policy_id"].(string)
	g.MustDo(200, "GET", g.P("/routing-rule/flowcontrol-policy?scope=RULE"), nil)
	g.MustDo(200, "GET", g.P("/routing-rule/flowcontrol-policy/"+policy), nil)
	g.MustDo(200, "PUT", g.P("/routing-rule/flowcontrol-policy/"+policy), map[string]any{"limit": 20})
	g.MustDo(204, "DELETE", g.P("/routing-rule/flowcontrol-policy/"+policy), nil)
	backlog := g.MustDo(201, "POST", g.P("/routing-rule/backlog-policy"), map[string]any{"policy_name": "tour",
		"backlog_size": 1048576, "backlog_time": 600})["policy_id"].(string)
	g.MustDo(200, "GET", g.P("/routing-rule/backlog-policy"), nil)
	g.MustDo(200, "GET", g.P("/routing-rule/backlog-policy/"+backlog), nil)
	g.MustDo(200, "PUT", g.P("/routing-rule/backlog-policy/"+backlog), map[string]any{"backlog_time": 1200})
	g.MustDo(204, "DELETE", g.P("/routing-rule/backlog-policy/"+backlog), nil)
	if out := g.MustDo(404, "GET", g.P("/routing-rule/backlog-policy/"+backlog), nil); out["error_code"] != "IOTDA.014703" {
		t.Errorf("GET a deleted backlog policy: %v, want IOTDA.014703", out)
	}
	g.MustDo(204, "DELETE", g.P("/routing-rule/actions/"+action), nil)
	g.MustDo(204, "DELETE", g.P("/routing-rule/rules/"+rule), nil)
	for _, tc := range []struct{ path, code string }{{"/routing-rule/rules/", "IOTDA.014700"},
		{"/routing-rule/actions/", "IOTDA.014701"}, {"/routing-rule/flowcontrol-policy/", "IOTDA.014702"}} {
		if out := g.MustDo(404, "GET", g.P(tc.path+rule), nil); out["error_code"] != tc.code {
			t.Errorf("GET %s of a deleted one: %v, want %s", tc.path, out, tc.code)
		}
	}

	// Deletions last.
	for _, d := range []string{id, x509, nb} {
		g.MustDo(204, "DELETE", g.P("/devices/"+d), nil)
	}
	g.MustDo(204, "DELETE", g.P("/products/tour"), nil)

	g.api.mu.Lock()
	defer g.api.mu.Unlock()
	var missed []string
	for path, item := range g.api.doc.Paths.Map() {
		for method := range item.Operations() {
			if !g.api.seen[method+" "+path] {
				missed = append(missed, method+" "+path)
			}
		}
	}
	slices.Sort(missed)
	for _, m := range missed {
		t.Errorf("operation %s of /openapi.json is not exercised: add it to TestAPITour", m)
	}
}
