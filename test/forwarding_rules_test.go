package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawReceiver records the bodies pushed to it, as they came.
type rawReceiver struct {
	mu     sync.Mutex
	bodies []string
}

func (r *rawReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	r.bodies = append(r.bodies, string(b))
	r.mu.Unlock()
}

func (r *rawReceiver) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.bodies...)
}

func waitUntil(t *testing.T, g *Gate, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; logs:\n%s", what, g.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// createRule posts a rule of the gate's project and, when url is set, an
// HTTP action to it; it returns the status and the rule's (or error's)
// body, and the action's id.
func createRule(g *Gate, body map[string]any, url string) (int, map[string]any, string) {
	g.t.Helper()
	st, rule := g.Do("POST", g.P("/routing-rule/rules"), body)
	if st != http.StatusCreated || url == "" {
		return st, rule, ""
	}
	action := g.MustDo(201, "POST", g.P("/routing-rule/actions"), map[string]any{"rule_id": rule["rule_id"],
		"channel": "HTTP_FORWARDING", "channel_detail": map[string]any{"http_forwarding": map[string]any{"url": url}}})
	return st, rule, action["action_id"].(string)
}

// A rule's where (compiled by expr) filters and its select shapes what an
// HTTP receiver gets; a rule that does not compile is IoTDA's 400 naming
// the position and the problem.
func TestForwardingWhereSelect(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: "forwarding:\n  reload: 100ms\n"})
	g.CreateProduct("fws", "MQTT")
	const secret = "forwardSecret01"
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "fws",
		"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	recv := &rawReceiver{}
	srv := http.Server{Handler: recv}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })

	subject := map[string]any{"resource": "device.message", "event": "report"}
	for _, c := range []struct {
		field, clause, msg string
	}{
		{"where", "notify_data.body.content.temp == 30", "invalid where: at character 31: '==' is not an operator (equality is '=')"},
		{"where", "notify_data.body.content.temp > 30 AND", "invalid where: at character 39: unexpected end of clause"},
		{"where", "STARTS_WITH(notify_data.header.node_id)", "invalid where: at character 1: STARTS_WITH takes 2 argument(s), found 1"},
		{"select", "notify_data.body.content AS c, 'x'", "invalid select: at character 35: string 'x' needs a name: add AS name"},
	} {
		st, out, _ := createRule(g, map[string]any{"subject": subject, c.field: c.clause, "active": true}, "")
		if st != http.StatusBadRequest || out["error_code"] != "IOTDA.000006" || !strings.Contains(fmt.Sprint(out["error_msg"]), c.msg) {
			t.Errorf("%s %q: %d %v, want 400 %q", c.field, c.clause, st, out, c.msg)
		}
	}
	st, rule, _ := createRule(g, map[string]any{"subject": subject, "active": true,
		"where":  "notify_data.body.content.temp > 30 AND STARTS_WITH(notify_data.header.node_id, 'n')",
		"select": "notify_data.header.device_id AS device_id, notify_data.body.content, 'v1' AS schema"},
		"http://"+ln.Addr().String()+"/push")
	if st != http.StatusCreated {
		t.Fatalf("create rule: %d %v", st, rule)
	}
	// An update is checked the same way, and refused whole.
	if st, out := g.Do("PUT", g.P("/routing-rule/rules/"+rule["rule_id"].(string)), map[string]any{"select": "*, event AS resource"}); st != 400 ||
		!strings.Contains(fmt.Sprint(out["error_msg"]), `invalid select: at character 13: "resource" is selected twice: '*' holds it`) {
		t.Errorf("bad select update: %d %v", st, out)
	}
	time.Sleep(300 * time.Millisecond) // the engine picks the action up

	c := g.huaweiConnect("fws_n1", secret)
	for _, temp := range []int{20, 35, 30, 31} {
		if tok := c.Publish("$oc/devices/fws_n1/sys/messages/up", 1, false, fmt.Sprintf(`{"temp":%d}`, temp)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	waitUntil(t, g, "the selected pushes", 10*time.Second, func() bool { return len(recv.all()) >= 2 })
	time.Sleep(300 * time.Millisecond)
	got := recv.all()
	want := []string{
		`{"device_id":"fws_n1","notify_data.body.content":{"temp":35},"schema":"v1"}`,
		`{"device_id":"fws_n1","notify_data.body.content":{"temp":31},"schema":"v1"}`,
	}
	if len(got) != len(want) {
		t.Fatalf("pushed %q, want %q", got, want)
	}
	for i := range want {
		var g, w any
		if json.Unmarshal([]byte(got[i]), &g) != nil || json.Unmarshal([]byte(want[i]), &w) != nil || fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("push %d: %s, want %s", i, got[i], want[i])
		}
	}
}

// A destination that is down while more than its backlog bound builds up
// loses the oldest messages: counted on the action (GET: backlog), in
// /metrics and the log; when it is back it gets the newest, in order.
func TestForwardingBacklogOverflow(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: "forwarding:\n  reload: 100ms\n  retry_base: 20ms\n  retry_max: 200ms\n" +
		"  backlog:\n    check: 50ms\n    channels:\n      HTTP_FORWARDING: {max_size: 4000}\n"})
	g.CreateProduct("fwb", "MQTT")
	const secret = "forwardSecret01"
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "fwb",
		"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // down: connections are refused
	_, _, action := createRule(g, map[string]any{"subject": map[string]any{"resource": "device.message", "event": "report"},
		"active": true}, "http://"+addr+"/push")
	time.Sleep(300 * time.Millisecond)

	const n = 40
	c := g.huaweiConnect("fwb_n1", secret)
	for i := range n {
		if tok := c.Publish("$oc/devices/fwb_n1/sys/messages/up", 1, false, fmt.Sprintf(`{"i":%d,"pad":"%s"}`, i, strings.Repeat("x", 100))); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	dropped := func() float64 {
		f := scrapeMetrics(t, g.API+"/metrics", "")["iotgate_forwarding_backlog_dropped_total"]
		if f == nil {
			return 0
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["action"] == action && labels["bound"] == "size" {
				return m.GetCounter().GetValue()
			}
		}
		return 0
	}
	waitUntil(t, g, "the size bound to drop", 10*time.Second, func() bool { return dropped() > 0 })

	recv := &rawReceiver{}
	var up net.Listener
	for range 100 {
		if up, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := http.Server{Handler: recv}
	go func() { _ = srv.Serve(up) }()
	t.Cleanup(func() { srv.Close() })
	waitUntil(t, g, "the newest uplinks", 10*time.Second, func() bool { return len(recv.all())+int(dropped()) >= n })
	time.Sleep(300 * time.Millisecond)
	got, lost := recv.all(), int(dropped())
	if len(got)+lost != n || len(got) == 0 || len(got) > n/2 {
		t.Fatalf("%d pushed and %d dropped of %d uplinks (logs:\n%s)", len(got), lost, n, g.Logs())
	}
	for k, b := range got { // the newest, in order
		var e struct {
			NotifyData struct {
				Body struct {
					Content struct{ I int } `json:"content"`
				} `json:"body"`
			} `json:"notify_data"`
		}
		if err := json.Unmarshal([]byte(b), &e); err != nil || e.NotifyData.Body.Content.I != n-len(got)+k {
			t.Fatalf("push %d: %s, want uplink %d", k, b, n-len(got)+k)
		}
	}
	a := g.MustDo(200, "GET", g.P("/routing-rule/actions/"+action), nil)
	b, _ := a["backlog"].(map[string]any)
	if b == nil || b["dropped"] != float64(lost) || b["last_drop_reason"] != "backlog larger than its size bound" || len(fmt.Sprint(b["last_drop_time"])) != 16 {
		t.Errorf("action's backlog %v, want %d dropped for size", a["backlog"], lost)
	}
	if !strings.Contains(g.Logs(), "the oldest undelivered messages were dropped") {
		t.Error("the drop was not logged")
	}
}
