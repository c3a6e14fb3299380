package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDescriptorBudget starts iotgate with 400 descriptors and opens
// more authenticated MQTT sessions than it has descriptors at all (the
// crash this guards against: 20,000 clients took every descriptor,
// Badger could not open its next memtable and the process died). The
// sessions past the MQTT pool are closed at accept and counted; a
// session from before the flood keeps working; REST creates, each on a
// new connection, keep succeeding and survive a restart; the process
// keeps descriptors to spare; and once the flood ends new devices
// connect again.
func TestDescriptorBudget(t *testing.T) {
	descriptorFlood(t, descriptorRun{nofile: 400, reserve: 150, api: 40, sessions: 450})
}

// TestDescriptorBudgetFlood is the same at a larger scale, with the
// default reserve and API pool, for SECURITY.md's figures: 4,096
// descriptors and 6,000 sessions. It runs
// only when IOTGATE_FLOOD is set (about a minute).
//
//	IOTGATE_FLOOD=1 go test -count=1 -run TestDescriptorBudgetFlood -v ./test
func TestDescriptorBudgetFlood(t *testing.T) {
	if os.Getenv("IOTGATE_FLOOD") == "" {
		t.Skip("set IOTGATE_FLOOD=1 to run the descriptor flood measurement")
	}
	descriptorFlood(t, descriptorRun{nofile: 4096, sessions: 6000})
}

// descriptorRun is one flood: the process's limit, limits.descriptors
// (0: the defaults) and the MQTT sessions opened, more than the limit.
type descriptorRun struct {
	nofile, reserve, api, sessions int
}

// plan is the budget cmd/iotgate cuts from the run's limit.
func (r descriptorRun) plan() (reserve, budget, api, mqtt int) {
	reserve, api = r.reserve, r.api
	if reserve == 0 {
		reserve = min(1024, r.nofile/4)
	}
	budget = r.nofile - reserve
	if api == 0 {
		api = max(budget/10, 16)
	}
	const operator = 32 // cmd/iotgate's opsConns
	return reserve, budget, api, budget - api - operator
}

func descriptorFlood(t *testing.T, r descriptorRun) {
	requireTool(t, "prlimit")
	reserve, budget, apiPool, pool := r.plan()
	var limits string
	if r.reserve != 0 || r.api != 0 {
		limits = fmt.Sprintf("descriptors:\n  reserve: %d\n  api: %d\n", r.reserve, r.api)
	}
	g := StartGate(t, GateOptions{NoFile: r.nofile, LogLevel: "info", Limits: limits})
	if !strings.Contains(g.Logs(), fmt.Sprintf("soft_limit=%d hard_limit=%d reserve=%d budget=%d mqtt=%d api=%d",
		r.nofile, r.nofile, reserve, budget, pool, apiPool)) {
		t.Fatalf("no start line with the budget's figures:\n%s", g.Logs())
	}
	if r.sessions <= r.nofile {
		t.Fatalf("%d sessions would not exhaust %d descriptors", r.sessions, r.nofile)
	}
	devs := floodDevices(t, g, r.sessions)

	// A device connected before the flood.
	victim, err := net.Dial("tcp", g.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	if code := connack(t, victim, floodConnect("flood_victim", floodSecret)); code != 0 {
		t.Fatalf("victim CONNACK %d", code)
	}
	fresh := &http.Client{Transport: g.checked(&http.Transport{DisableKeepAlives: true}), Timeout: 10 * time.Second}
	var created []string
	creates := func(prefix string) []time.Duration {
		var took []time.Duration
		for i := range 20 {
			node := fmt.Sprintf("%s%02d", prefix, i)
			took = append(took, createOnNewConn(t, g, fresh, node))
			created = append(created, "flood_"+node)
		}
		slices.Sort(took)
		return took
	}
	calm := creates("calm")

	// The flood: sessions held open, one after another, so that which
	// are refused is certain.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	refused := 0
	start := time.Now()
	for _, id := range devs {
		c, err := net.Dial("tcp", g.MQTT)
		if err != nil {
			t.Fatalf("dial %s: %v", id, err)
		}
		held = append(held, c)
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write(floodConnect(id, floodSecret)); err != nil {
			refused++ // closed at accept before the write
			continue
		}
		ack := make([]byte, 4)
		if _, err := io.ReadFull(c, ack); err != nil {
			refused++ // closed at accept, nothing answered
			continue
		}
		if ack[3] != 0 {
			t.Fatalf("%s: CONNACK %d", id, ack[3])
		}
	}
	floodTook := time.Since(start)
	// The pool holds the victim and pool-1 of the flood.
	if want := len(devs) - (pool - 1); refused != want {
		t.Fatalf("%d flood sessions refused, want %d (pool %d)", refused, want, pool)
	}
	fds, rss := procStats(g)
	if fds > r.nofile-reserve/2 {
		t.Fatalf("%d descriptors open under the flood, limit %d: the reserve is being eaten", fds, r.nofile)
	}

	// The session from before the flood still answers.
	_ = victim.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := victim.Write([]byte{0xc0, 0}); err != nil {
		t.Fatal(err)
	}
	pong := make([]byte, 2)
	if _, err := io.ReadFull(victim, pong); err != nil || pong[0] != 0xd0 {
		t.Fatalf("victim PINGREQ under the flood: % x, %v", pong, err)
	}
	// REST creates, each on a connection of its own, go on.
	under := creates("late")

	m := scrapeMetrics(t, g.API+"/metrics", "")
	if got := m.value(t, "iotgate_connection_pool_refused_total", "pool", "mqtt"); int(got) != refused {
		t.Fatalf("iotgate_connection_pool_refused_total{pool=mqtt} = %v, want %d", got, refused)
	}
	if got := m.value(t, "iotgate_connection_pool_open", "pool", "mqtt"); int(got) != pool {
		t.Fatalf("iotgate_connection_pool_open{pool=mqtt} = %v, want %d", got, pool)
	}
	if got := m.value(t, "iotgate_connection_pool_limit", "pool", "mqtt"); int(got) != pool {
		t.Fatalf("iotgate_connection_pool_limit{pool=mqtt} = %v, want %d", got, pool)
	}
	if !strings.Contains(g.Logs(), "connection refused: descriptor budget for connections spent") {
		t.Fatal("no log line for the refusals")
	}
	lines := strings.Count(g.Logs(), "connection refused: descriptor budget")

	// The flood ends: its descriptors come back and new devices connect.
	for _, c := range held {
		c.Close()
	}
	held = nil
	deadline := time.Now().Add(30 * time.Second)
	for {
		open := scrapeMetrics(t, g.API+"/metrics", "").value(t, "iotgate_connection_pool_open", "pool", "mqtt")
		if open == 1 { // the victim's
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("MQTT pool still holds %v connections after the flood closed", open)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, id := range append(devs[:3:3], created[len(created)-1]) {
		if code := mqttConnack(t, "127.0.0.1", g.MQTT, floodConnect(id, floodSecret)); code != 0 {
			t.Fatalf("%s after the flood: CONNACK %d", id, code)
		}
	}
	t.Logf("limit %d: reserve %d, budget %d (mqtt %d, api %d); %d sessions in %v, %d refused at accept "+
		"(%d log lines); %d descriptors open, RSS %.1f MB under the flood; REST creates on new connections "+
		"20/20 before and 20/20 under it, p50/p99 %v/%v before, %v/%v under",
		r.nofile, reserve, budget, pool, apiPool, len(devs), floodTook.Round(time.Millisecond), refused, lines,
		fds, float64(rss)/(1<<20), calm[10], calm[19], under[10], under[19])

	// The creates are durable.
	g.Stop()
	g.Restart()
	for _, id := range created {
		g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id), nil)
	}
}

// createOnNewConn creates device node of the flood product through
// client (which keeps no connection alive) and returns how long it took.
func createOnNewConn(t *testing.T, g *Gate, client *http.Client, node string) time.Duration {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"node_id": node, "product_id": "flood",
		"auth_info": map[string]any{"secret": floodSecret, "secure_access": false}})
	req, _ := http.NewRequest(http.MethodPost, g.API+g.P("/devices"), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Auth-Token", g.Token)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("REST create %s: %v", node, err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("REST create %s: %d %s", node, resp.StatusCode, raw)
	}
	return time.Since(start)
}

// connack sends connect on c and returns the CONNACK's code.
func connack(t *testing.T, c net.Conn, connect []byte) byte {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatal(err)
	}
	if ack[0] != 0x20 {
		t.Fatalf("not a CONNACK: % x", ack)
	}
	return ack[3]
}
