package test

import (
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// pushEnvelope is IoTDA's push message as a receiver reads it.
type pushEnvelope struct {
	Resource    string `json:"resource"`
	Event       string `json:"event"`
	EventTime   string `json:"event_time"`
	EventTimeMs string `json:"event_time_ms"`
	RequestID   string `json:"request_id"`
	NotifyData  struct {
		Header struct {
			AppID     string `json:"app_id"`
			DeviceID  string `json:"device_id"`
			NodeID    string `json:"node_id"`
			ProductID string `json:"product_id"`
			GatewayID string `json:"gateway_id"`
			Tags      []any  `json:"tags"`
		} `json:"header"`
		Body json.RawMessage `json:"body"`
	} `json:"notify_data"`
}

type push struct {
	at  time.Time
	env pushEnvelope
}

// receiver is an application's HTTP endpoint: it records every push and
// answers 200. down closes it (connections are refused), up opens it
// again on the same address.
type receiver struct {
	t      *testing.T
	addr   string
	useTLS bool
	cert   tls.Certificate
	caPEM  string

	mu     sync.Mutex
	pushes []push
	srv    *httptest.Server
}

func newReceiver(t *testing.T, useTLS bool) *receiver {
	r := &receiver{t: t, useTLS: useTLS}
	r.start(nil)
	t.Cleanup(r.down)
	return r
}

func (r *receiver) start(ln net.Listener) {
	r.t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var env pushEnvelope
		if err := json.Unmarshal(b, &env); err != nil || req.Method != http.MethodPost {
			r.t.Errorf("receiver got %s %q: %v", req.Method, b, err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		r.pushes = append(r.pushes, push{at: time.Now(), env: env})
		r.mu.Unlock()
	}))
	if ln != nil {
		srv.Listener.Close()
		srv.Listener = ln
	}
	if r.useTLS {
		srv.StartTLS()
		r.caPEM = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}))
	} else {
		srv.Start()
	}
	r.addr = srv.Listener.Addr().String()
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
}

func (r *receiver) url() string {
	if r.useTLS {
		return "https://" + r.addr + "/push"
	}
	return "http://" + r.addr + "/push"
}

func (r *receiver) down() {
	r.mu.Lock()
	srv := r.srv
	r.srv = nil
	r.mu.Unlock()
	if srv != nil {
		srv.CloseClientConnections()
		srv.Close()
	}
}

func (r *receiver) up() {
	r.t.Helper()
	var ln net.Listener
	var err error
	for range 100 { // the port was just closed: it may take a moment
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.start(ln)
}

func (r *receiver) all() []push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]push(nil), r.pushes...)
}

func (r *receiver) waitFor(what string, d time.Duration, g *Gate, cond func([]push) bool) []push {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		p := r.all()
		if cond(p) {
			return p
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("receiver: timed out waiting for %s (%d pushes); logs:\n%s", what, len(p), g.Logs())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// forwardTo makes a rule of subject (and where) with an HTTP action to
// url, in the project of token; it returns the rule id.
func (g *Gate) forwardTo(token, project, resource, event, where, url string, detail map[string]any) string {
	g.t.Helper()
	st, rule := g.DoToken(token, "POST", "/v5/iot/"+project+"/routing-rule/rules", map[string]any{
		"rule_name": resource + " " + event, "subject": map[string]any{"resource": resource, "event": event},
		"app_type": "GLOBAL", "where": where, "active": true})
	if st != http.StatusCreated {
		g.t.Fatalf("create rule: %d %v", st, rule)
	}
	h := map[string]any{"url": url}
	for k, v := range detail {
		h[k] = v
	}
	st, action := g.DoToken(token, "POST", "/v5/iot/"+project+"/routing-rule/actions", map[string]any{
		"rule_id": rule["rule_id"], "channel": "HTTP_FORWARDING", "channel_detail": map[string]any{"http_forwarding": h}})
	if st != http.StatusCreated {
		g.t.Fatalf("create action: %d %v", st, action)
	}
	return rule["rule_id"].(string)
}

// An MQTT device's uplink and status, an NB device's command status and
// a downlink message's status reach an HTTP receiver (and an HTTPS one
// trusting an uploaded CA) in IoTDA's envelope; a where filters; another
// project's rule sees only its own devices.
func TestForwardingHTTPEnvelopes(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: "forwarding:\n  poll: 10ms\n  reload: 100ms\n"})
	g.CreateProduct("fwm", "MQTT")
	g.CreateProduct("fwnb", "CoAP")
	const secret = "forwardSecret01"
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "fwm",
		"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "imei1", "product_id": "fwnb",
		"auth_info": map[string]any{"secret": "00112233445566778899aabbccddeeff"}})

	plain, secure, hot, other := newReceiver(t, false), newReceiver(t, true), newReceiver(t, false), newReceiver(t, false)
	cert := g.MustDo(201, "POST", g.P("/certificates"), map[string]any{"content": secure.caPEM})
	for _, s := range [][2]string{{"device.message", "report"}, {"device.status", "update"},
		{"device.command.status", "update"}, {"device.message.status", "update"}, {"device.property", "report"},
		{"device", "update"}, {"device", "delete"}} {
		g.forwardTo(g.Token, g.Project, s[0], s[1], "", plain.url(), nil)
	}
	g.forwardTo(g.Token, g.Project, "device.message", "report", "", secure.url(), map[string]any{"cert_id": cert["certificate_id"]})
	g.forwardTo(g.Token, g.Project, "device.message", "report", "notify_data.body.content.temp > 30", hot.url(), nil)
	g.forwardTo(g.Token, g.Project, "device.property", "report", "notify_data.body.services[0].properties.temp > 30", hot.url(), nil)
	g.forwardTo("token-proj2-0123456789", "proj2", "device", "create", "", other.url(), nil)
	g.forwardTo("token-proj2-0123456789", "proj2", "device.message", "report", "", other.url(), nil)
	time.Sleep(300 * time.Millisecond) // the engine picks the actions up

	c := g.huaweiConnect("fwm_n1", secret)
	for _, temp := range []int{20, 35} {
		if tok := c.Publish("$oc/devices/fwm_n1/sys/messages/up", 1, false, fmt.Sprintf(`{"temp":%d}`, temp)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	for _, temp := range []int{25, 40} {
		if tok := c.Publish("$oc/devices/fwm_n1/sys/properties/report", 1, false,
			fmt.Sprintf(`{"services":[{"service_id":"Basic","properties":{"temp":%d}}]}`, temp)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	g.MustDo(200, "PUT", g.P("/devices/fwnb_imei1"), map[string]any{"device_name": "renamed"})
	g.MustDo(201, "POST", g.P("/devices/fwnb_imei1/async-commands"), map[string]any{"service_id": "Basic", "command_name": "read", "paras": map[string]any{"a": 1}})
	g.MustDo(201, "POST", g.P("/devices/fwm_n1/messages"), map[string]any{"message_id": "down-1", "message": "hello"})
	// proj2's device, whose creation its rule forwards.
	if st, out := g.DoToken("token-proj2-0123456789", "POST", "/v5/iot/proj2/products", map[string]any{"product_id": "p2m", "name": "P2",
		"device_type": "Sensor", "protocol_type": "MQTT",
		"service_capabilities": []any{map[string]any{"service_id": "Basic", "service_type": "Basic"}}}); st != 201 {
		t.Fatal(st, out)
	}
	if st, out := g.DoToken("token-proj2-0123456789", "POST", "/v5/iot/proj2/devices", map[string]any{"node_id": "x", "product_id": "p2m"}); st != 201 {
		t.Fatal(st, out)
	}

	kinds := func(ps []push) map[string][]pushEnvelope {
		m := map[string][]pushEnvelope{}
		for _, p := range ps {
			m[p.env.Resource+"/"+p.env.Event] = append(m[p.env.Resource+"/"+p.env.Event], p.env)
		}
		return m
	}
	got := kinds(plain.waitFor("uplinks, status, command status, message status", 20*time.Second, g, func(ps []push) bool {
		k := kinds(ps)
		return len(k["device.message/report"]) == 2 && len(k["device.status/update"]) >= 1 &&
			len(k["device.command.status/update"]) >= 1 && len(k["device.message.status/update"]) >= 1 &&
			len(k["device.property/report"]) == 2 && len(k["device/update"]) >= 2
	}))
	var props struct {
		Services []struct {
			ServiceID  string         `json:"service_id"`
			Properties map[string]int `json:"properties"`
		} `json:"services"`
	}
	if pr := got["device.property/report"][1]; json.Unmarshal(pr.NotifyData.Body, &props) != nil || len(props.Services) != 1 ||
		props.Services[0].ServiceID != "Basic" || props.Services[0].Properties["temp"] != 40 {
		t.Errorf("property push %s", pr.NotifyData.Body)
	}
	// The updates: fwm_n1's activation at its first connection, and
	// fwnb_imei1's new name.
	renamed := false
	for _, u := range got["device/update"] {
		var upd map[string]any
		if err := json.Unmarshal(u.NotifyData.Body, &upd); err != nil {
			t.Fatal(err)
		}
		renamed = renamed || (upd["device_name"] == "renamed" && upd["device_id"] == "fwnb_imei1" && u.NotifyData.Header.DeviceID == "fwnb_imei1")
	}
	if !renamed {
		t.Errorf("no push of the rename among %+v", got["device/update"])
	}
	up := got["device.message/report"][1]
	if up.RequestID == "" || len(up.EventTime) != 16 || len(up.EventTimeMs) != 24 || up.NotifyData.Header.DeviceID != "fwm_n1" ||
		up.NotifyData.Header.AppID != g.Project || up.NotifyData.Header.ProductID != "fwm" || up.NotifyData.Header.NodeID != "n1" {
		t.Errorf("uplink envelope %+v", up)
	}
	var body struct {
		Content struct{ Temp int } `json:"content"`
		Topic   string             `json:"topic"`
	}
	if err := json.Unmarshal(up.NotifyData.Body, &body); err != nil || body.Content.Temp != 35 {
		t.Errorf("uplink body %s: %v", up.NotifyData.Body, err)
	}
	var status struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(got["device.status/update"][0].NotifyData.Body, &status); err != nil || status.Status != "ONLINE" {
		t.Errorf("status body %s", got["device.status/update"][0].NotifyData.Body)
	}
	cmd := got["device.command.status/update"][0]
	var cb map[string]any
	if err := json.Unmarshal(cmd.NotifyData.Body, &cb); err != nil || cmd.NotifyData.Header.DeviceID != "fwnb_imei1" ||
		cb["command_id"] == nil || cb["status"] == nil {
		t.Errorf("command status push %+v %s", cmd, cmd.NotifyData.Body)
	}
	var mb map[string]any
	if ms := got["device.message.status/update"][0]; json.Unmarshal(ms.NotifyData.Body, &mb) != nil || mb["message_id"] != "down-1" {
		t.Errorf("message status push %s", ms.NotifyData.Body)
	}

	// HTTPS with the uploaded CA: the same two uplinks.
	secure.waitFor("HTTPS pushes", 10*time.Second, g, func(ps []push) bool { return len(ps) == 2 })
	// The wheres kept only the hot uplink and the hot property report.
	hot.waitFor("the filtered pushes", 10*time.Second, g, func(ps []push) bool { return len(ps) >= 2 })
	time.Sleep(300 * time.Millisecond)
	hk := kinds(hot.all())
	if len(hk["device.message/report"]) != 1 || hk["device.message/report"][0].RequestID != up.RequestID ||
		len(hk["device.property/report"]) != 1 || hk["device.property/report"][0].RequestID != got["device.property/report"][1].RequestID {
		t.Errorf("where rules pushed %+v, want only the uplink with temp 35 and the report of temp 40", hk)
	}
	// A deletion is pushed too.
	g.MustDo(204, "DELETE", g.P("/devices/fwnb_imei1"), nil)
	plain.waitFor("the deletion", 10*time.Second, g, func(ps []push) bool {
		for _, p := range ps {
			if p.env.Resource == "device" && p.env.Event == "delete" && p.env.NotifyData.Header.DeviceID == "fwnb_imei1" {
				return true
			}
		}
		return false
	})
	// proj2's rules saw proj2's device, and nothing of proj1's.
	others := other.waitFor("proj2's device creation", 10*time.Second, g, func(ps []push) bool { return len(ps) >= 1 })
	time.Sleep(300 * time.Millisecond)
	if others = other.all(); len(others) != 1 || others[0].env.NotifyData.Header.DeviceID != "p2m_x" || others[0].env.NotifyData.Header.AppID != "proj2" {
		t.Errorf("proj2's receiver got %+v", others)
	}
}

// sendUplinks has each device send {"i":from}... up to to-1 at QoS 1,
// window PUBLISHes in flight; acked records what the server acknowledged.
// A device stops early when stop is set or a publish is not acknowledged;
// it returns where each device is to go on from.
func sendUplinks(clients []paho.Client, ids []string, from, to []int, window int, acked []map[int]bool, total *atomic.Int64, stop *atomic.Bool) []int {
	return sendUplinksRecording(clients, ids, from, to, window, acked, nil, total, stop)
}

// sendUplinksRecording is sendUplinks that also records, in unacked, the
// publishes not acknowledged: the server may have taken them before it
// died, so when the device sends them again they may arrive twice, under
// two request_ids (MQTT QoS 1's duplicates, not the forwarding's).
func sendUplinksRecording(clients []paho.Client, ids []string, from, to []int, window int, acked, unacked []map[int]bool, total *atomic.Int64, stop *atomic.Bool) []int {
	next := make([]int, len(ids))
	var wg sync.WaitGroup
	var mu sync.Mutex
	for d := range ids {
		wg.Go(func() {
			type sent struct {
				i   int
				tok paho.Token
			}
			var inflight []sent
			failed := -1 // the first publish not acknowledged: the device resends from it
			settle := func(s sent) {
				if s.tok.WaitTimeout(15*time.Second) && s.tok.Error() == nil {
					mu.Lock()
					acked[d][s.i] = true
					mu.Unlock()
					total.Add(1)
				} else {
					if unacked != nil {
						mu.Lock()
						unacked[d][s.i] = true
						mu.Unlock()
					}
					if failed < 0 {
						failed = s.i
					}
				}
			}
			i := from[d]
			for ; !stop.Load() && failed < 0 && i < to[d]; i++ {
				tok := clients[d].Publish("$oc/devices/"+ids[d]+"/sys/messages/up", 1, false, fmt.Sprintf(`{"i":%d}`, i))
				inflight = append(inflight, sent{i, tok})
				if len(inflight) == window {
					settle(inflight[0])
					inflight = inflight[1:]
				}
			}
			for _, s := range inflight {
				settle(s)
			}
			next[d] = i
			if failed >= 0 {
				next[d] = failed
			}
		})
	}
	wg.Wait()
	return next
}

// checkDelivery checks pushes of device.message events: every
// acknowledged uplink arrived, each device's in the order sent once
// duplicates are dropped by request_id, and a duplicate repeats its
// original exactly.
func checkDelivery(t *testing.T, pushes []push, ids []string, acked, unacked []map[int]bool) (dups int) {
	t.Helper()
	index := map[string]int{}
	for i, id := range ids {
		index[id] = i
	}
	byID := map[string]int{}
	last := make([]int, len(ids))
	seen := make([]map[int]bool, len(ids))
	for d := range ids {
		last[d] = -1
		seen[d] = map[int]bool{}
	}
	for _, p := range pushes {
		d, ok := index[p.env.NotifyData.Header.DeviceID]
		if !ok || p.env.Resource != "device.message" {
			t.Fatalf("unexpected push %+v", p.env)
		}
		var body struct {
			Content struct{ I int } `json:"content"`
		}
		if err := json.Unmarshal(p.env.NotifyData.Body, &body); err != nil {
			t.Fatal(err)
		}
		i := body.Content.I
		if prev, dup := byID[p.env.RequestID]; dup {
			if prev != i {
				t.Fatalf("request_id %s pushed with message %d, then %d", p.env.RequestID, prev, i)
			}
			dups++
			continue
		}
		byID[p.env.RequestID] = i
		if seen[d][i] {
			if unacked != nil && unacked[d][i] {
				dups++ // sent twice by the device: two events
				continue
			}
			t.Errorf("%s: message %d pushed under two request_ids", ids[d], i)
		}
		seen[d][i] = true
		if i <= last[d] {
			t.Errorf("%s: message %d pushed after %d", ids[d], i, last[d])
		}
		last[d] = i
	}
	lost := 0
	for d := range ids {
		for i := range acked[d] {
			if !seen[d][i] {
				lost++
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d acknowledged uplinks never pushed", lost)
	}
	return dups
}

func allArrived(ids []string, acked []map[int]bool) func([]push) bool {
	return func(ps []push) bool {
		got := map[string]map[int]bool{}
		for _, p := range ps {
			var body struct {
				Content struct{ I int } `json:"content"`
			}
			_ = json.Unmarshal(p.env.NotifyData.Body, &body)
			id := p.env.NotifyData.Header.DeviceID
			if got[id] == nil {
				got[id] = map[int]bool{}
			}
			got[id][body.Content.I] = true
		}
		for d, id := range ids {
			for i := range acked[d] {
				if !got[id][i] {
					return false
				}
			}
		}
		return true
	}
}

// kill -9 in the middle of a stream of QoS 1 uplinks: after the restart
// (and the rest of the stream), every acknowledged uplink reaches the
// receiver, each device's in order, duplicates only by request_id.
func TestForwardingSurvivesKill(t *testing.T) {
	const devices, perDevice, window, secret = 4, 5000, 16, "forwardKill0001"
	g := StartGate(t, GateOptions{LogLevel: "info", Extra: "forwarding:\n  poll: 10ms\n  reload: 100ms\n  retry_max: 1s\n",
		Limits: "mqtt:\n  uplink_rate: 1000000\n  uplink_burst: 1000000\n"})
	g.CreateProduct("fk", "MQTT")
	rcv := newReceiver(t, false)
	g.forwardTo(g.Token, g.Project, "device.message", "report", "", rcv.url(), nil)
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("fk_n%d", i)
		g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprintf("n%d", i), "product_id": "fk",
			"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	}
	time.Sleep(300 * time.Millisecond)
	connect := func() []paho.Client {
		cs := make([]paho.Client, devices)
		for i, id := range ids {
			cs[i] = g.huaweiConnect(id, secret)
		}
		return cs
	}
	acked := make([]map[int]bool, devices)
	for d := range acked {
		acked[d] = map[int]bool{}
	}
	var total atomic.Int64
	var stop atomic.Bool
	start := time.Now()
	from, to := make([]int, devices), make([]int, devices)
	for d := range to {
		to[d] = perDevice
	}
	var next []int
	done := make(chan struct{})
	unacked := make([]map[int]bool, devices)
	for d := range unacked {
		unacked[d] = map[int]bool{}
	}
	go func() {
		next = sendUplinksRecording(connect(), ids, from, to, window, acked, unacked, &total, &stop)
		close(done)
	}()
	for total.Load() < devices*perDevice/2 && time.Since(start) < time.Minute {
		time.Sleep(5 * time.Millisecond)
	}
	g.Kill()
	stop.Store(true)
	<-done
	killedAt := total.Load()
	pushedBefore := len(rcv.all())

	g.Restart()
	stop.Store(false)
	sendUplinks(connect(), ids, next, to, window, acked, &total, &stop)
	sent := time.Since(start)
	pushes := rcv.waitFor("every acknowledged uplink", 3*time.Minute, g, allArrived(ids, acked))
	dups := checkDelivery(t, pushes, ids, acked, unacked)
	t.Logf("%d QoS 1 uplinks acknowledged (%d before kill -9, %d pushed by then) sent in %v; all %d pushes received %v after the start, %d duplicates (by request_id, or resent by the device)",
		total.Load(), killedAt, pushedBefore, sent.Round(time.Millisecond), len(pushes), time.Since(start).Round(time.Millisecond), dups)
	if total.Load() < devices*perDevice*9/10 {
		t.Errorf("only %d of %d uplinks acknowledged", total.Load(), devices*perDevice)
	}
}

// A receiver down for a while (5 s with forwarding.retry_max 1s, so the
// suite stays short; IOTGATE_FORWARD_OUTAGE=2m runs the 2
// minutes) loses nothing: its backlog drains in order at most at
// drain_rate; a second, healthy receiver of the same rule is not delayed
// meanwhile.
func TestForwardingReceiverDownThenBack(t *testing.T) {
	const devices, secret, drainRate = 3, "forwardDown0001", 100
	outage := 5 * time.Second
	if v := os.Getenv("IOTGATE_FORWARD_OUTAGE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("IOTGATE_FORWARD_OUTAGE: %v", err)
		}
		outage = d
	}
	g := StartGate(t, GateOptions{LogLevel: "info", Extra: fmt.Sprintf("forwarding:\n  poll: 10ms\n  reload: 100ms\n  retry_base: 50ms\n  retry_max: 1s\n  drain_rate: %d\n", drainRate),
		Limits: "mqtt:\n  uplink_rate: 1000000\n  uplink_burst: 1000000\n"})
	g.CreateProduct("fd", "MQTT")
	flaky, healthy := newReceiver(t, false), newReceiver(t, false)
	g.forwardTo(g.Token, g.Project, "device.message", "report", "", flaky.url(), nil)
	g.forwardTo(g.Token, g.Project, "device.message", "report", "", healthy.url(), nil)
	ids := make([]string, devices)
	clients := make([]paho.Client, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("fd_n%d", i)
		g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprintf("n%d", i), "product_id": "fd",
			"auth_info": map[string]any{"secret": secret, "secure_access": false}})
		clients[i] = g.huaweiConnect(ids[i], secret)
	}
	time.Sleep(300 * time.Millisecond)
	acked := make([]map[int]bool, devices)
	for d := range acked {
		acked[d] = map[int]bool{}
	}
	var total atomic.Int64
	var stop atomic.Bool
	// The flaky receiver goes down; uplinks go on at about 60/s meanwhile.
	flaky.down()
	downAt := time.Now()
	sentAt := map[string]time.Time{}
	var sentMu sync.Mutex
	i := 0
	for time.Since(downAt) < outage {
		from, to := make([]int, devices), make([]int, devices)
		for d := range from {
			from[d], to[d] = i, i+1
		}
		now := time.Now()
		sendUplinks(clients, ids, from, to, 1, acked, &total, &stop)
		sentMu.Lock()
		for _, id := range ids {
			sentAt[fmt.Sprintf("%s/%d", id, i)] = now
		}
		sentMu.Unlock()
		i++
		time.Sleep(50 * time.Millisecond)
	}
	backlog := int(total.Load())
	// Meanwhile every uplink reached the healthy receiver promptly.
	hp := healthy.waitFor("the healthy receiver's pushes", 10*time.Second, g, allArrived(ids, acked))
	var delays []time.Duration
	for _, p := range hp {
		var body struct {
			Content struct{ I int } `json:"content"`
		}
		_ = json.Unmarshal(p.env.NotifyData.Body, &body)
		delays = append(delays, p.at.Sub(sentAt[fmt.Sprintf("%s/%d", p.env.NotifyData.Header.DeviceID, body.Content.I)]))
	}
	sort.Slice(delays, func(a, b int) bool { return delays[a] < delays[b] })
	// Held up by the other action, its pushes would wait for the outage
	// (5 s); a loaded machine may add a few hundred milliseconds.
	p99 := delays[len(delays)*99/100]
	if p99 > 1500*time.Millisecond {
		t.Errorf("the healthy receiver's p99 delay was %v while the other was down", p99)
	}
	if n := len(flaky.all()); n != 0 {
		t.Fatalf("a closed receiver got %d pushes", n)
	}
	// /metrics shows the outage: one action lags by most of it and has
	// failed, the other has caught up.
	lags := forwardingSeries(t, g, "iotgate_forwarding_lag_seconds")
	fails := forwardingSeries(t, g, "iotgate_forwarding_failures_total")
	var behind, current int
	for a, lag := range lags {
		switch {
		case lag > 2 && fails[a] > 0:
			behind++
		case lag < 1:
			current++
		}
	}
	if behind != 1 || current != 1 || len(lags) != 2 {
		t.Errorf("forwarding lag by action %v, failures %v: want one action seconds behind and failing, one caught up", lags, fails)
	}

	flaky.up()
	upAt := time.Now()
	// The backlog drains at drain_rate: allow twice that, and a minute.
	fp := flaky.waitFor("the backlog", time.Minute+time.Duration(2*backlog/drainRate)*time.Second, g, allArrived(ids, acked))
	first, last := fp[0].at, fp[len(fp)-1].at
	drained := last.Sub(first)
	// At most drain_rate per second, with a burst of drain_rate/10.
	if min := time.Duration(float64(backlog-drainRate/10-1) / drainRate * float64(time.Second)); drained < min {
		t.Errorf("%d messages drained in %v, faster than %d/s", backlog, drained, drainRate)
	}
	if dups := checkDelivery(t, fp, ids, acked, nil); dups != 0 {
		t.Logf("%d duplicates", dups)
	}
	checkDelivery(t, hp, ids, acked, nil)
	// Caught up: no lag left, and each action's deliveries counted.
	deadline := time.Now().Add(5 * time.Second)
	for {
		lags, delivered := forwardingSeries(t, g, "iotgate_forwarding_lag_seconds"), forwardingSeries(t, g, "iotgate_forwarding_delivered_total")
		ok := len(lags) == 2
		for a := range lags {
			ok = ok && lags[a] == 0 && delivered[a] >= float64(backlog)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the drain: forwarding lag %v, delivered %v (backlog %d)", lags, delivered, backlog)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("backlog %d while down %v; back after %v (first retry), drained in %v; healthy receiver p99 delay %v",
		backlog, upAt.Sub(downAt).Round(time.Millisecond), first.Sub(upAt).Round(time.Millisecond), drained.Round(time.Millisecond), p99)
}

// forwardingSeries reads a forwarding metric of g's /metrics, by action.
func forwardingSeries(t *testing.T, g *Gate, name string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	f := scrapeMetrics(t, g.API+"/metrics", "")[name]
	if f == nil {
		return out
	}
	for _, m := range f.GetMetric() {
		var action string
		for _, l := range m.GetLabel() {
			if l.GetName() == "action" {
				action = l.GetValue()
			}
		}
		switch {
		case m.Counter != nil:
			out[action] = m.Counter.GetValue()
		case m.Gauge != nil:
			out[action] = m.Gauge.GetValue()
		}
	}
	return out
}
