package api

import (
	"fmt"
	"strings"
	"testing"
)

func TestRoutingRulesREST(t *testing.T) {
	s, _ := newTestServer(t)
	st, out := call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/rules",
		`{"rule_name":"temps","subject":{"resource":"device.property","event":"report"},"app_type":"GLOBAL",
		  "where":"notify_data.body.services[0].properties.temp > 30","active":true}`)
	if st != 201 || out["rule_id"] == "" || out["app_id"] != "p1" || out["active"] != true ||
		out["subject"].(map[string]any)["resource"] != "device.property" {
		t.Fatalf("create rule: %d %v", st, out)
	}
	rule := out["rule_id"].(string)

	for _, tc := range []struct {
		body, code, msg string
	}{
		{`{"subject":{"resource":"device.property","event":"report"},"where":"temp > 3"}`, "IOTDA.000006",
			`invalid where: at character 1: unknown field "temp"`},
		{`{"subject":{"resource":"device.property","event":"update"}}`, "IOTDA.000006", "device.property/update is not a subject"},
		{`{"rule_name":"x"}`, "IOTDA.000006", "invalid subject: is required"},
		{`{"subject":{"resource":"device","event":"create"},"select":"a,b"}`, "IOTDA.000006", `invalid select: at character 1: unknown field "a"`},
		{`{"subject":{"resource":"device","event":"create"},"select":"'x'"}`, "IOTDA.000006", "invalid select: at character 4: string 'x' needs a name: add AS name"},
		{`{"subject":{"resource":"device","event":"create"},"where":"resource = 'x' AND"}`, "IOTDA.000006", "invalid where: at character 19: unexpected end of clause"},
		{`{"subject":{"resource":"device","event":"create"},"app_id":"p2"}`, "IOTDA.000006", "invalid app_id"},
		{`{"subject":{"resource":"device","event":"create"},"active":"yes"}`, "IOTDA.000006", "invalid active"},
		{`{"subject":`, "IOTDA.000008", "not valid JSON"},
	} {
		st, out := call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/rules", tc.body)
		if st != 400 || out["error_code"] != tc.code || !strings.Contains(fmt.Sprint(out["error_msg"]), tc.msg) {
			t.Errorf("%s: %d %v, want 400 %s %q", tc.body, st, out, tc.code, tc.msg)
		}
	}

	// Project isolation: p2 neither sees nor changes p1's rule.
	if st, out := call(s, "tok2", "GET", "/v5/iot/p2/routing-rule/rules/"+rule, ""); st != 404 || out["error_code"] != "IOTDA.014700" {
		t.Errorf("p2 read p1's rule: %d %v", st, out)
	}
	if st, _ := call(s, "tok2", "GET", "/v5/iot/p1/routing-rule/rules/"+rule, ""); st != 403 {
		t.Errorf("p2's token on p1's path: %d", st)
	}
	if st, out := call(s, "tok2", "POST", "/v5/iot/p2/routing-rule/actions",
		`{"rule_id":"`+rule+`","channel":"HTTP_FORWARDING","channel_detail":{"http_forwarding":{"url":"http://127.0.0.1:9/"}}}`); st != 404 {
		t.Errorf("p2 added an action to p1's rule: %d %v", st, out)
	}

	st, out = call(s, "tok1", "PUT", "/v5/iot/p1/routing-rule/rules/"+rule, `{"active":false,"where":""}`)
	if st != 200 || out["active"] != false || out["where"] != "" || out["rule_name"] != "temps" {
		t.Errorf("update rule: %d %v", st, out)
	}

	st, out = call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/actions",
		`{"rule_id":"`+rule+`","channel":"HTTP_FORWARDING","channel_detail":{"http_forwarding":{"url":"http://127.0.0.1:9/push","signature_enable":true,"token":"abc123"}}}`)
	if st != 201 || out["channel"] != "HTTP_FORWARDING" {
		t.Fatalf("create action: %d %v", st, out)
	}
	action := out["action_id"].(string)
	if st, out := call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/actions/"+action, ""); st != 200 ||
		fmt.Sprint(out["backlog"]) != "map[dropped:0]" {
		t.Errorf("show action: %d %v, want its backlog with nothing dropped", st, out)
	}
	h := out["channel_detail"].(map[string]any)["http_forwarding"].(map[string]any)
	if h["url"] != "http://127.0.0.1:9/push" || h["token"] != nil || h["signature_enable"] != true {
		t.Errorf("action view (the token must never be shown): %v", h)
	}
	for _, tc := range []struct{ body, msg string }{
		{`{"rule_id":"` + rule + `","channel":"AMQP_FORWARDING","channel_detail":{}}`, `invalid channel: "AMQP_FORWARDING" is not supported`},
		{`{"rule_id":"` + rule + `","channel":"HTTP_FORWARDING"}`, "invalid channel_detail: is required"},
		{`{"rule_id":"` + rule + `","channel":"HTTP_FORWARDING","channel_detail":{"http_forwarding":{"url":"ftp://x"}}}`, "invalid channel_detail.http_forwarding.url"},
		{`{"rule_id":"` + rule + `","channel":"NATS_FORWARDING","channel_detail":{"nats_forwarding":{"url":"nats://a:1","subject":"a.*"}}}`, "invalid channel_detail.nats_forwarding.subject"},
	} {
		st, out := call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/actions", tc.body)
		if st != 400 || !strings.Contains(fmt.Sprint(out["error_msg"]), tc.msg) {
			t.Errorf("%s: %d %v, want 400 %q", tc.body, st, out, tc.msg)
		}
	}
	// An update without the token keeps it (responses never show it).
	st, out = call(s, "tok1", "PUT", "/v5/iot/p1/routing-rule/actions/"+action,
		`{"channel_detail":{"http_forwarding":{"url":"http://127.0.0.1:9/v2","signature_enable":true}}}`)
	if st != 200 {
		t.Errorf("update action: %d %v", st, out)
	}
	st, out = call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/actions?rule_id="+rule, "")
	if st != 200 || out["count"] != float64(1) || len(out["actions"].([]any)) != 1 {
		t.Errorf("list actions: %d %v", st, out)
	}
	if st, out := call(s, "tok2", "GET", "/v5/iot/p2/routing-rule/actions", ""); st != 200 || out["count"] != float64(0) {
		t.Errorf("p2 lists p1's actions: %d %v", st, out)
	}
	if st, out := call(s, "tok1", "DELETE", "/v5/iot/p1/routing-rule/rules/"+rule, ""); st != 204 {
		t.Errorf("delete rule: %d %v", st, out)
	}
	if st, out := call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/actions/"+action, ""); st != 404 || out["error_code"] != "IOTDA.014701" {
		t.Errorf("action after its rule's deletion: %d %v", st, out)
	}
}

func TestRoutingRulesPaging(t *testing.T) {
	s, _ := newTestServer(t)
	var ids []string
	for i := range 5 {
		st, out := call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/rules",
			fmt.Sprintf(`{"rule_name":"r%d","subject":{"resource":"device","event":"create"},"active":%v}`, i, i%2 == 0))
		if st != 201 {
			t.Fatal(st, out)
		}
		ids = append(ids, out["rule_id"].(string))
	}
	st, out := call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/rules?limit=2", "")
	rules := out["rules"].([]any)
	if st != 200 || out["count"] != float64(5) || len(rules) != 2 || rules[0].(map[string]any)["rule_id"] != ids[4] {
		t.Fatalf("first page: %d %v", st, out)
	}
	_, out = call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/rules?limit=2&marker="+out["marker"].(string), "")
	rules = out["rules"].([]any)
	if len(rules) != 2 || rules[0].(map[string]any)["rule_id"] != ids[2] {
		t.Errorf("second page: %v", out)
	}
	_, out = call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/rules?active=true", "")
	if out["count"] != float64(3) {
		t.Errorf("active filter: %v", out)
	}
	if st, out := call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/rules?limit=51", ""); st != 400 || out["error_code"] != "IOTDA.000017" {
		t.Errorf("limit 51: %d %v", st, out)
	}
}

func TestFlowControlPoliciesREST(t *testing.T) {
	s, _ := newTestServer(t)
	st, out := call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/flowcontrol-policy", `{"policy_name":"all","scope":"USER","limit":200}`)
	if st != 201 || out["limit"] != float64(200) || out["scope"] != "USER" || out["policy_id"] == "" {
		t.Fatalf("create: %d %v", st, out)
	}
	id := out["policy_id"].(string)
	for _, tc := range []struct{ body, msg string }{
		{`{"scope":"CHANNEL","scope_value":"AMQP_FORWARDING"}`, "invalid scope_value"},
		{`{"scope":"USER"}`, "already bounds scope USER"},
		{`{"scope":"CHANNEL","scope_value":"HTTP_FORWARDING","limit":0}`, "invalid limit"},
		{`{"scope":"CHANNEL","scope_value":"HTTP_FORWARDING","limit":5000}`, "invalid limit"},
		{`{"scope":"RULE","scope_value":"nope"}`, `no routing rule "nope"`},
	} {
		st, out := call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/flowcontrol-policy", tc.body)
		if st != 400 || !strings.Contains(fmt.Sprint(out["error_msg"]), tc.msg) {
			t.Errorf("%s: %d %v, want 400 %q", tc.body, st, out, tc.msg)
		}
	}
	if st, out := call(s, "tok1", "PUT", "/v5/iot/p1/routing-rule/flowcontrol-policy/"+id, `{"limit":100}`); st != 200 || out["limit"] != float64(100) {
		t.Errorf("update: %d %v", st, out)
	}
	if st, out := call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/flowcontrol-policy?scope=USER", ""); st != 200 || out["count"] != float64(1) ||
		len(out["flowcontrol_policies"].([]any)) != 1 {
		t.Errorf("list: %d %v", st, out)
	}
	if st, out := call(s, "tok2", "GET", "/v5/iot/p2/routing-rule/flowcontrol-policy/"+id, ""); st != 404 || out["error_code"] != "IOTDA.014702" {
		t.Errorf("p2 read p1's policy: %d %v", st, out)
	}
	if st, _ := call(s, "tok1", "DELETE", "/v5/iot/p1/routing-rule/flowcontrol-policy/"+id, ""); st != 204 {
		t.Errorf("delete: %d", st)
	}
}

func TestBacklogPoliciesREST(t *testing.T) {
	s, _ := newTestServer(t)
	st, out := call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/backlog-policy", `{"policy_name":"default"}`)
	if st != 201 || out["policy_id"] == "" || out["backlog_size"] != float64(1073741823) || out["backlog_time"] != float64(86399) {
		t.Fatalf("create with IoTDA's defaults: %d %v", st, out)
	}
	id := out["policy_id"].(string)
	for _, tc := range []struct{ body, msg string }{
		{`{"backlog_size":-1}`, "invalid backlog_size: must be 0 to 1073741823 (bytes)"},
		{`{"backlog_time":86400}`, "invalid backlog_time: must be 0 to 86399 (seconds)"},
		{`{"backlog_time":"1h"}`, "invalid backlog_time"},
	} {
		st, out := call(s, "tok1", "POST", "/v5/iot/p1/routing-rule/backlog-policy", tc.body)
		if st != 400 || out["error_code"] != "IOTDA.000006" || !strings.Contains(fmt.Sprint(out["error_msg"]), tc.msg) {
			t.Errorf("%s: %d %v, want 400 %q", tc.body, st, out, tc.msg)
		}
	}
	st, out = call(s, "tok1", "PUT", "/v5/iot/p1/routing-rule/backlog-policy/"+id, `{"backlog_size":4096,"backlog_time":0}`)
	if st != 200 || out["backlog_size"] != float64(4096) || out["backlog_time"] != float64(0) || out["policy_name"] != "default" {
		t.Errorf("update: %d %v", st, out)
	}
	if st, out := call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/backlog-policy", ""); st != 200 || out["count"] != float64(1) {
		t.Errorf("list: %d %v", st, out)
	}
	if st, out := call(s, "tok2", "GET", "/v5/iot/p2/routing-rule/backlog-policy/"+id, ""); st != 404 || out["error_code"] != "IOTDA.014703" {
		t.Errorf("p2 read p1's policy: %d %v", st, out)
	}
	if st, _ := call(s, "tok1", "DELETE", "/v5/iot/p1/routing-rule/backlog-policy/"+id, ""); st != 204 {
		t.Errorf("delete: %d", st)
	}
	if st, out := call(s, "tok1", "GET", "/v5/iot/p1/routing-rule/backlog-policy/"+id, ""); st != 404 || out["error_code"] != "IOTDA.014703" {
		t.Errorf("deleted policy: %d %v", st, out)
	}
}
