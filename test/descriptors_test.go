package test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestDescriptorBudget starts iotgate with 400 descriptors and opens
// more authenticated MQTT sessions than its MQTT pool holds, more than
// it has descriptors at all (the crash
// this guards against: 20,000 clients took every descriptor, Badger
// could not open its next memtable and the process died). The sessions
// past the pool are closed at accept and counted; a session from before
// the flood keeps working; REST creates, each on a new connection, keep
// succeeding and survive a restart; the process keeps descriptors to
// spare; and once the flood ends new devices connect again.
func TestDescriptorBudget(t *testing.T) {
	requireTool(t, "prlimit")
	const (
		nofile  = 400
		reserve = 150
		apiPool = 40
		opsPool = 32 // cmd/iotgate's opsConns
		pool    = nofile - reserve - apiPool - opsPool
		// More sessions than the process has descriptors: without the
		// budget the flood would take them all.
		over = nofile - pool + 50
	)
	g := StartGate(t, GateOptions{NoFile: nofile, LogLevel: "info",
		Limits: fmt.Sprintf("descriptors:\n  reserve: %d\n  api: %d\n", reserve, apiPool)})
	if !strings.Contains(g.Logs(), fmt.Sprintf("soft_limit=%d hard_limit=%d reserve=%d budget=%d mqtt=%d api=%d",
		nofile, nofile, reserve, nofile-reserve, pool, apiPool)) {
		t.Fatalf("no start line with the budget's figures:\n%s", g.Logs())
	}
	devs := floodDevices(t, g, pool+over)

	// A device connected before the flood.
	victim, err := net.Dial("tcp", g.MQTT)
	if err != nil {
		t.Fatal(err)
	}
	defer victim.Close()
	if code := connack(t, victim, floodConnect("flood_victim", floodSecret)); code != 0 {
		t.Fatalf("victim CONNACK %d", code)
	}

	// The flood: sessions held open, one after another, so that which
	// are refused is certain.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	refused := 0
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
	// The pool holds the victim and pool-1 of the flood.
	if want := len(devs) - (pool - 1); refused != want {
		t.Fatalf("%d flood sessions refused, want %d (pool %d)", refused, want, pool)
	}
	fds, _ := procStats(g)
	if fds > nofile-reserve/2 {
		t.Fatalf("%d descriptors open under the flood, limit %d: the reserve is being eaten", fds, nofile)
	}
	t.Logf("flood: %d sessions, %d refused at accept, %d descriptors open of %d", len(devs), refused, fds, nofile)

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
	fresh := &http.Client{Transport: g.checked(&http.Transport{DisableKeepAlives: true}), Timeout: 10 * time.Second}
	var created []string
	for i := range 20 {
		body, _ := json.Marshal(map[string]any{"node_id": fmt.Sprintf("late%02d", i), "product_id": "flood",
			"auth_info": map[string]any{"secret": floodSecret, "secure_access": false}})
		req, _ := http.NewRequest(http.MethodPost, g.API+g.P("/devices"), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Auth-Token", g.Token)
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatalf("REST create under the flood: %v", err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("REST create under the flood: %d %s", resp.StatusCode, raw)
		}
		created = append(created, fmt.Sprintf("flood_late%02d", i))
	}

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

	// The flood ends: its descriptors come back and new devices connect.
	for _, c := range held {
		c.Close()
	}
	held = nil
	deadline := time.Now().Add(10 * time.Second)
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
	for _, id := range append(devs[:3:3], created[0]) {
		if code := mqttConnack(t, "127.0.0.1", g.MQTT, floodConnect(id, floodSecret)); code != 0 {
			t.Fatalf("%s after the flood: CONNACK %d", id, code)
		}
	}

	// The creates are durable.
	g.Stop()
	g.Restart()
	for _, id := range created {
		g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id), nil)
	}
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
