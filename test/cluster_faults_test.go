package test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry/kv/pgkv/pgtest"
)

// The cluster's failure behaviour (issue 17): PostgreSQL killed under a
// create burst, NATS servers restarted, two nodes racing one device's
// sessions. Each test starts its own PostgreSQL, NATS cluster and nodes.

// apiResult is one REST call's outcome, as a client saw it.
type apiResult struct {
	status int
	body   map[string]any
	err    error // transport: no answer
}

// call is Gate.Do for goroutines: it never ends the test, and it reports
// a request that got no answer in err.
func call(client *http.Client, g *Gate, method, path string, body any) apiResult {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiResult{err: err}
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, g.API+path, rd)
	if err != nil {
		return apiResult{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", g.Token)
	resp, err := client.Do(req)
	if err != nil {
		return apiResult{err: err}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiResult{status: resp.StatusCode, err: err}
	}
	r := apiResult{status: resp.StatusCode}
	if len(bytes.TrimSpace(raw)) > 0 {
		if err := json.Unmarshal(raw, &r.body); err != nil {
			r.err = fmt.Errorf("answer %d is not JSON: %q", resp.StatusCode, raw)
		}
	}
	return r
}

// The outcomes of a create as api/errors.go words them.
const (
	msgNothingWritten = "Nothing was written"
	msgMayHaveApplied = "it may have been applied"
)

// createOutcome classifies a create's answer: acknowledged (201), not
// written (a 503 saying so), unknown (a 503 saying it may have been
// applied), or bad (anything else: a test failure).
type createOutcome int

const (
	createAcked createOutcome = iota
	createNotWritten
	createUnknown
	createBad
)

func classifyCreate(r apiResult) createOutcome {
	if r.err != nil {
		return createBad
	}
	if r.status == http.StatusCreated {
		return createAcked
	}
	msg, _ := r.body["error_msg"].(string)
	if r.status != http.StatusServiceUnavailable || r.body["error_code"] != "IOTDA.000001" ||
		!strings.HasPrefix(msg, "Service unavailable") {
		return createBad
	}
	switch {
	case strings.Contains(msg, msgNothingWritten):
		return createNotWritten
	case strings.Contains(msg, msgMayHaveApplied):
		return createUnknown
	}
	return createBad
}

// TestClusterPostgresKilledDuringCreateBurst: 64 REST clients spread
// over three nodes create devices; PostgreSQL is killed (immediate
// shutdown: no checkpoint, recovery from the WAL at the next start) in
// the middle and restarted on its port 2 s later. Every answer is a 201
// or a 503 IoTDA error body; the nodes create again, without a restart,
// within a bound; every acknowledged device exists, none the store
// refused ("Nothing was written") does, and the product's device count
// is the acknowledged creates plus those reported unknown that turn out
// to exist.
func TestClusterPostgresKilledDuringCreateBurst(t *testing.T) {
	total := 10000
	if raceEnabled || testing.Short() {
		total = 3000 // the race detector slows the nodes several times
	}
	const (
		clients   = 64
		killAfter = 0.3 // of total acknowledged
		down      = 2 * time.Second
		burstMax  = 30 * time.Second
		recoverBy = 15 * time.Second
	)
	c := newCluster(t, 3, clusterOptions{})
	gates := c.gates
	gates[0].CreateProduct("burst", "MQTT")
	gates[0].CreateProduct("probe", "MQTT")

	client := &http.Client{Timeout: 30 * time.Second,
		Transport: gates[0].checked(&http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients})}
	defer client.CloseIdleConnections()
	type attempt struct {
		res        apiResult
		start, end time.Time
	}
	results := make([]attempt, total)
	var next, acked atomic.Int64
	var restartedAt atomic.Pointer[time.Time]
	began := time.Now()
	killed := make(chan time.Time, 1)
	killErr := make(chan error, 1)
	go func() { // the killer
		for acked.Load() < int64(float64(total)*killAfter) && time.Since(began) < burstMax/2 {
			time.Sleep(10 * time.Millisecond)
		}
		killed <- time.Now()
		if err := c.pg.Stop(pgtest.Immediate); err != nil {
			killErr <- err
			return
		}
		time.Sleep(down)
		err := c.pg.Restart()
		now := time.Now()
		restartedAt.Store(&now)
		killErr <- err
	}()
	var wg sync.WaitGroup
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(began) < burstMax {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				g := gates[i%len(gates)]
				a := attempt{start: time.Now()}
				a.res = call(client, g, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprint("b", i), "product_id": "burst"})
				a.end = time.Now()
				results[i] = a
				if a.res.status == http.StatusCreated {
					acked.Add(1)
				} else {
					time.Sleep(200 * time.Millisecond) // a client backs off on a refusal
				}
			}
		}()
	}
	wg.Wait()
	killedAt := <-killed
	if err := <-killErr; err != nil {
		t.Fatalf("killing and restarting PostgreSQL: %v\n%s", err, tail(c.pg.Log(), 4000))
	}
	restarted := *restartedAt.Load()
	attempted := min(int(next.Load()), total)
	t.Logf("%d creates attempted in %v by %d clients (PostgreSQL killed after %v, restarted %v later)",
		attempted, time.Since(began).Round(time.Millisecond), clients, killedAt.Sub(began).Round(time.Millisecond),
		restarted.Sub(killedAt).Round(time.Millisecond))

	// Recovery: each node's first create sent after the restart that
	// succeeded, from the burst, else from probes now.
	for n, g := range gates {
		var first time.Duration = -1
		for i := n; i < attempted; i += len(gates) {
			a := results[i]
			if !a.start.Before(restarted) && a.res.status == http.StatusCreated && (first < 0 || a.end.Sub(restarted) < first) {
				first = a.end.Sub(restarted)
			}
		}
		for k := 0; first < 0; k++ {
			st := call(client, g, "POST", g.P("/devices"), map[string]any{"node_id": fmt.Sprintf("p%d-%d", n, k), "product_id": "probe"})
			if st.status == http.StatusCreated {
				first = time.Since(restarted)
			} else if time.Since(restarted) > recoverBy {
				t.Fatalf("node %d still fails creates %v after PostgreSQL restarted: %d %v %v", n+1, recoverBy, st.status, st.body, st.err)
			} else {
				time.Sleep(100 * time.Millisecond)
			}
		}
		t.Logf("node %d: creates succeed %v after PostgreSQL restarted", n+1, first.Round(time.Millisecond))
	}

	// Every answer was a 201 or a clear 503.
	var ackedIDs, unknownIDs, notWrittenIDs []string
	var failedInOutage, inFlight, conflicts int
	for i := range attempted {
		a := results[i]
		id := fmt.Sprint("burst_b", i)
		switch classifyCreate(a.res) {
		case createAcked:
			ackedIDs = append(ackedIDs, id)
			continue
		case createNotWritten:
			notWrittenIDs = append(notWrittenIDs, id)
			if msg, _ := a.res.body["error_msg"].(string); strings.Contains(msg, "concurrent writes") {
				conflicts++
			}
		case createUnknown:
			unknownIDs = append(unknownIDs, id)
		default:
			t.Errorf("create %d (node %d, sent %v after the kill): %d %v %v", i, i%len(gates)+1,
				a.start.Sub(killedAt).Round(time.Millisecond), a.res.status, a.res.body, a.res.err)
			continue
		}
		if a.start.Before(killedAt) {
			inFlight++
		} else {
			failedInOutage++
		}
	}
	t.Logf("%d acknowledged, %d refused with nothing written (%d of them lost to other nodes' concurrent writes), "+
		"%d outcome unknown; of the failures %d were sent before the kill, %d after",
		len(ackedIDs), len(notWrittenIDs), conflicts, len(unknownIDs), inFlight, failedInOutage)
	if t.Failed() {
		t.FailNow()
	}
	if len(notWrittenIDs)+len(unknownIDs) == 0 {
		t.Fatal("no create failed: PostgreSQL was not killed during the burst")
	}

	// Read back through every node in turn.
	exists := func(ids []string) (map[string]bool, error) {
		out := make(map[string]bool, len(ids))
		var mu sync.Mutex
		var firstErr error
		var wg sync.WaitGroup
		work := make(chan int)
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range work {
					g := gates[i%len(gates)]
					r := call(client, g, "GET", g.P("/devices/"+ids[i]), nil)
					mu.Lock()
					switch {
					case r.err == nil && r.status == http.StatusOK:
						out[ids[i]] = true
					case r.err == nil && r.status == http.StatusNotFound:
						out[ids[i]] = false
					case firstErr == nil:
						firstErr = fmt.Errorf("GET %s: %d %v %v", ids[i], r.status, r.body, r.err)
					}
					mu.Unlock()
				}
			}()
		}
		for i := range ids {
			work <- i
		}
		close(work)
		wg.Wait()
		return out, firstErr
	}
	got, err := exists(ackedIDs)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ackedIDs {
		if !got[id] {
			t.Errorf("acknowledged device %s is gone", id)
		}
	}
	got, err = exists(notWrittenIDs)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range notWrittenIDs {
		if got[id] {
			t.Errorf("device %s exists, though its create was answered %q", id, msgNothingWritten)
		}
	}
	got, err = exists(unknownIDs)
	if err != nil {
		t.Fatal(err)
	}
	unknownKept := 0
	for _, id := range unknownIDs {
		if got[id] {
			unknownKept++
		}
	}
	want := len(ackedIDs) + unknownKept
	for n, g := range gates {
		page := g.MustDo(http.StatusOK, "GET", g.P("/devices?product_id=burst&limit=1"), nil)
		if count := int(page["page"].(map[string]any)["count"].(float64)); count != want {
			t.Errorf("node %d counts %d devices, want %d (%d acknowledged + %d of %d unknown that exist)",
				n+1, count, want, len(ackedIDs), unknownKept, len(unknownIDs))
		}
	}
}

// commandResponder connects an MQTT device to g and answers every
// command it receives with result_code 0; the device's id comes back in
// the response's paras.
func commandResponder(t *testing.T, g *Gate, d *mqttDevice) paho.Client {
	t.Helper()
	topic := "$oc/devices/" + d.id + "/sys/commands/"
	o := g.huaweiOptions(d.id, d.secret).SetDefaultPublishHandler(func(c paho.Client, m paho.Message) {
		id, ok := strings.CutPrefix(m.Topic(), topic+"request_id=")
		if !ok {
			return
		}
		c.Publish(topic+"response/request_id="+id, 1, false,
			fmt.Sprintf(`{"result_code":0,"response_name":"ok","paras":{"device":%q}}`, d.id))
	})
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect %s: %v", d.id, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// waitBus waits until every node's /healthz says it reaches the store
// and the bus again, and returns how long that took.
func waitBus(t *testing.T, gates []*Gate, since time.Time) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 3 * time.Second, Transport: gates[0].checked(nil)}
	for n, g := range gates {
		for {
			r := call(client, g, "GET", "/healthz", nil)
			if r.err == nil && r.status == http.StatusOK && r.body["bus"] == "ok" {
				break
			}
			if time.Since(since) > 20*time.Second {
				t.Fatalf("node %d's bus is not back 20 s after NATS restarted: %d %v %v", n+1, r.status, r.body, r.err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return time.Since(since)
}

// checkRouting checks, through node 1, a synchronous command reaching
// responder (connected to node 2) and a freeze of victim dropping its
// session on node 2 within 1 s.
func checkRouting(t *testing.T, g1 *Gate, responder string, victim *mqttDevice, g2 *Gate, when string) {
	t.Helper()
	lost := make(chan struct{})
	o := g2.huaweiOptions(victim.id, victim.secret).SetConnectionLostHandler(func(paho.Client, error) { close(lost) })
	vc := paho.NewClient(o)
	if tok := vc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: connect %s to node 2: %v", when, victim.id, tok.Error())
	}
	defer vc.Disconnect(0)
	waitOnline(t, g1, victim.id)

	// Right after NATS restarts, node 2's subscription may not have
	// reached node 1's server over the routes yet: such a command is
	// refused as not delivered, until routing resumes.
	start := time.Now()
	refused := 0
	for {
		st, body := g1.Do("POST", g1.P("/devices/"+responder+"/commands"),
			map[string]any{"service_id": "Basic", "command_name": "ping", "paras": map[string]any{}})
		if r, _ := body["response"].(map[string]any); st == http.StatusOK && r["result_code"] == 0.0 {
			break
		}
		msg, _ := body["error_msg"].(string)
		if st != http.StatusServiceUnavailable || !strings.Contains(msg, "cannot be reached") || time.Since(start) > 5*time.Second {
			t.Fatalf("%s: a command through node 1 to a device on node 2: %d %v", when, st, body)
		}
		refused++
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("%s: command through node 1 answered by the device on node 2 %v after the check began (%d refused as not delivered before)",
		when, time.Since(start).Round(time.Millisecond), refused)

	start = time.Now() // the freeze's answer may wait for the kick
	if st, body := g1.Do("POST", g1.P("/devices/"+victim.id+"/freeze"), nil); st != http.StatusNoContent {
		t.Fatalf("%s: freeze through node 1: %d %v", when, st, body)
	}
	select {
	case <-lost:
		t.Logf("%s: freeze through node 1 dropped the session on node 2 in %v", when, time.Since(start).Round(time.Millisecond))
	case <-time.After(time.Second - time.Since(start)):
		t.Fatalf("%s: node 2 kept, 1 s on, the session of a device frozen through node 1", when)
	}
}

// TestClusterNATSRestarts: one NATS server (node 2's own) is killed and
// restarted, then all three: after each, once the nodes report their
// bus healthy again, a command through node 1 reaches a device on node
// 2 and a freeze through node 1 drops a session on node 2 within 1 s.
// An asynchronous command to an LwM2M device on node 2, sent through
// node 1 while no NATS server runs, is kept PENDING and delivered at
// the device's next uplink once NATS is back.
func TestClusterNATSRestarts(t *testing.T) {
	c := newCluster(t, 2, clusterOptions{})
	g1, g2 := c.gates[0], c.gates[1]
	g1.CreateProduct("nb", "CoAP")
	responder := createMQTTDevice(t, g1, "natsr", "resp", false)
	var victims []*mqttDevice
	for i := range 3 {
		victims = append(victims, &mqttDevice{id: fmt.Sprint("natsr_v", i), secret: responder.secret, g: g2})
		g1.MustDo(http.StatusCreated, "POST", g1.P("/devices"), map[string]any{"node_id": fmt.Sprint("v", i),
			"product_id": "natsr", "auth_info": map[string]any{"secret": responder.secret, "secure_access": false}})
	}
	commandResponder(t, g2, responder)
	waitOnline(t, g1, responder.id)
	checkRouting(t, g1, responder.id, victims[0], g2, "before any restart")

	// The LwM2M device registers with node 2.
	dev := lwm2mDevice(t, g1, "nats-ue", false, nil)
	lc := goClient(t, g2, lwm2mclient.Config{Endpoint: "nats-ue", Lifetime: 300})
	if err := lc.Register(context.Background()); err != nil {
		t.Fatalf("register with node 2: %v", err)
	}
	waitDeviceStatus(t, g1, dev, "ONLINE")

	// One server: node 2's first.
	c.nats[1].Kill()
	time.Sleep(time.Second)
	start := time.Now()
	c.nats[1].Restart()
	t.Logf("one NATS server restarted: every node's bus healthy %v later", waitBus(t, c.gates, start).Round(time.Millisecond))
	checkRouting(t, g1, responder.id, victims[1], g2, "after one NATS server restarted")

	// All of them; meanwhile an async command for the LwM2M device.
	for _, s := range c.nats {
		s.Kill()
	}
	cmd := g1.MustDo(http.StatusCreated, "POST", g1.P("/devices/"+dev+"/async-commands"), map[string]any{
		"service_id": "LwM2M", "command_name": "WRITE", "paras": map[string]any{"path": "/3/0/14", "value": "+05:00"},
		"send_strategy": "immediately"})
	id := cmd["command_id"].(string)
	if cmd["status"] != "PENDING" {
		t.Fatalf("async command for a device whose node is unreachable: %v", cmd)
	}
	time.Sleep(500 * time.Millisecond)
	if got := g1.MustDo(http.StatusOK, "GET", g1.P("/devices/"+dev+"/async-commands/"+id), nil); got["status"] != "PENDING" {
		t.Fatalf("async command while NATS is down: %v", got)
	}
	start = time.Now()
	for _, s := range c.nats {
		s.Restart()
	}
	t.Logf("all NATS servers restarted: every node's bus healthy %v later", waitBus(t, c.gates, start).Round(time.Millisecond))
	checkRouting(t, g1, responder.id, victims[2], g2, "after every NATS server restarted")

	// The device's next uplink (an Update to node 2) brings it the command.
	if err := lc.Update(context.Background()); err != nil {
		t.Fatalf("update with node 2: %v", err)
	}
	waitCommand(t, g1, dev, id, "SUCCESSFUL")
	if v, _ := lc.Value("/3/0/14"); v.Str() != "+05:00" {
		t.Fatalf("/3/0/14 = %v after the command", v)
	}
}

// stormClient is one connect of the storm: its own ClientId (Huawei's
// format with sign_type 0 takes any YYYYMMDDHH as the HMAC key, so each
// connect names another one) and whether its session is still up.
type stormClient struct {
	c    paho.Client
	node int
	lost atomic.Bool
}

// TestClusterConnectStormOneSession: 20 goroutines connect one device's
// credentials 10 times each, alternating between two nodes, each connect
// with a ClientId of its own, keeping every client open: once the storm
// settles exactly one client is connected, and both nodes say the device
// is ONLINE. When that client disconnects too, both say OFFLINE and the
// device's status events (every change reported at once: no OFFLINE
// grace) end with that OFFLINE.
func TestClusterConnectStormOneSession(t *testing.T) {
	const workers, rounds = 20, 10
	// The storm is a flapping device by design: no ban for it. Every
	// status change is an event at once (no grace for OFFLINE).
	c := newCluster(t, 2, clusterOptions{limits: "flapping:\n  max: 0\n", extra: "events:\n  offline_grace: 0s\n"})
	gates := c.gates
	d := createMQTTDevice(t, gates[0], "storm", "s1", false)

	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	var all []*stormClient
	var accepted, refused atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				n := (w + r) % len(gates)
				ts := base.Add(time.Duration(w*rounds+r) * time.Hour).Format("2006010215")
				m := hmac.New(sha256.New, []byte(ts))
				m.Write([]byte(d.secret))
				sc := &stormClient{node: n}
				o := paho.NewClientOptions().AddBroker("tcp://" + gates[n].MQTT).SetClientID(d.id + "_0_0_" + ts).
					SetUsername(d.id).SetPassword(hex.EncodeToString(m.Sum(nil))).SetProtocolVersion(4).
					SetKeepAlive(60 * time.Second).SetAutoReconnect(false).SetConnectRetry(false).SetCleanSession(true).
					SetConnectTimeout(10 * time.Second).
					SetConnectionLostHandler(func(paho.Client, error) { sc.lost.Store(true) })
				sc.c = paho.NewClient(o)
				tok := sc.c.Connect()
				if !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
					refused.Add(1)
					continue
				}
				accepted.Add(1)
				mu.Lock()
				all = append(all, sc)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	defer func() {
		for _, sc := range all {
			sc.c.Disconnect(0)
		}
	}()
	t.Logf("%d connects accepted, %d refused", accepted.Load(), refused.Load())
	if accepted.Load() == 0 {
		t.Fatal("no connect of the storm was accepted")
	}

	// Settled: one client left, for 2 s running.
	live := func() []*stormClient {
		var out []*stormClient
		for _, sc := range all {
			if sc.c.IsConnectionOpen() && !sc.lost.Load() {
				out = append(out, sc)
			}
		}
		return out
	}
	deadline := time.Now().Add(15 * time.Second)
	var stableSince time.Time
	for {
		l := live()
		switch {
		case len(l) == 1 && stableSince.IsZero():
			stableSince = time.Now()
		case len(l) != 1:
			stableSince = time.Time{}
		}
		if !stableSince.IsZero() && time.Since(stableSince) >= 2*time.Second {
			break
		}
		if time.Now().After(deadline) {
			perNode := make([]int, len(gates))
			for _, sc := range l {
				perNode[sc.node]++
			}
			nodes := gates[0].MustDo(http.StatusOK, "GET", gates[0].P("/cluster/nodes"), nil)
			t.Fatalf("%d clients of one device still connected 15 s after the storm (per node %v); the nodes say %v",
				len(l), perNode, nodes)
		}
		time.Sleep(100 * time.Millisecond)
	}
	winner := live()[0]
	t.Logf("the session left is on node %d", winner.node+1)
	for n, g := range gates {
		if s := deviceStatus(t, g, d.id); s != "ONLINE" {
			t.Fatalf("node %d says the device is %s while a client of it is connected to node %d", n+1, s, winner.node+1)
		}
	}

	winner.c.Disconnect(100)
	for _, g := range gates {
		waitDeviceStatus(t, g, d.id, "OFFLINE")
	}
	time.Sleep(3 * time.Second) // room for a late status write to show
	for n, g := range gates {
		if s := deviceStatus(t, g, d.id); s != "OFFLINE" {
			t.Fatalf("node %d says the device is %s after its last client disconnected", n+1, s)
		}
	}
	evs, _ := gates[0].readEvents("")
	var statuses []string
	for _, e := range evs {
		if e.Resource != "device.status" || e.NotifyData.Header.DeviceID != d.id {
			continue
		}
		var b struct {
			Status string `json:"status"`
		}
		if err := json.Unmarshal(e.NotifyData.Body, &b); err != nil {
			t.Fatalf("status event body %s: %v", e.NotifyData.Body, err)
		}
		statuses = append(statuses, b.Status)
	}
	t.Logf("status events: %v", statuses)
	if len(statuses) == 0 || statuses[len(statuses)-1] != "OFFLINE" {
		t.Fatalf("the device's status events end %v, want OFFLINE last", statuses)
	}
}
