package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// The fleet of the failover test: MQTT and LwM2M devices on node 1, of
// which the last `away` of each kind never come back after node 1 dies.
const (
	failoverMQTT  = 1000
	failoverLwM2M = 1000
	failoverAway  = 5
	// failoverWorkers bounds the devices connecting at once.
	failoverWorkers = 48
	// failoverLiveness is registry.NodeLiveness: how long a dead node's
	// sessions still count as live after its last heartbeat.
	failoverLiveness = 15 * time.Second
)

// parallel runs fn(i) for i in [0, n) on failoverWorkers goroutines and
// returns the first error.
func parallel(n int, fn func(i int) error) error { return parallelOn(failoverWorkers, n, fn) }

// parallelOn is parallel on the given number of goroutines.
func parallelOn(workers, n int, fn func(i int) error) error {
	var (
		next  atomic.Int64
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// connectMQTT connects a Paho client of the device to g; lost is called
// when the connection drops.
func connectMQTT(g *Gate, id, secret string, lost func()) (paho.Client, error) {
	opts := g.huaweiOptions(id, secret)
	if lost != nil {
		opts.SetConnectionLostHandler(func(paho.Client, error) { lost() })
	}
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s to %s: %v", id, g.MQTT, tok.Error())
	}
	return c, nil
}

// answerCommands has the MQTT device answer every command it gets.
func answerCommands(t *testing.T, c paho.Client, id string) {
	t.Helper()
	topic := "$oc/devices/" + id + "/sys/commands/"
	tok := c.Subscribe(topic+"#", 1, func(c paho.Client, m paho.Message) {
		if reqID, ok := strings.CutPrefix(m.Topic(), topic+"request_id="); ok {
			c.Publish(topic+"response/request_id="+reqID, 1, false, `{"result_code":0,"paras":{"done":true}}`)
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", id, tok.Error())
	}
}

// A node killed with kill -9 while it holds 1,000 MQTT and 1,000 LwM2M
// devices: every device reconnects or re-registers through the two other
// nodes (each client moves on to the next address when node 1 stops
// answering) within 10 s of the kill; a synchronous command and an
// asynchronous READ sent through node 3 then reach devices that moved to
// node 2; and the devices that never come back read OFFLINE on every
// node once node 1's heartbeat is NodeLiveness old, with an OFFLINE
// status event each. Under the race detector the fleet is 200 of each.
func TestClusterFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster with 2,000 devices")
	}
	nMQTT, nLwM2M := failoverMQTT, failoverLwM2M
	if raceEnabled { // three race-enabled nodes: the behaviour, on a smaller fleet
		nMQTT, nLwM2M = 200, 200
	}
	gates, _ := startCluster(t, 3)
	g1, g2, g3 := gates[0], gates[1], gates[2]
	survivors := gates[1:]
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("node 2:\n%s\nnode 3:\n%s", tail(g2.Logs(), 4000), tail(g3.Logs(), 4000))
		}
	})
	g1.CreateProduct("fo", "MQTT")
	g1.CreateProduct("nb", "CoAP")
	const secret = "failoverSecret1"
	mqttID := func(i int) string { return fmt.Sprint("fo_m", i) }
	lwID := func(i int) string { return fmt.Sprint("nb_e", i) }
	start := time.Now()
	// Created through one node: creates of one product racing on three
	// nodes conflict on its device count (a matter for the create storm
	// test, not this one).
	err := parallel(nMQTT+nLwM2M, func(i int) error {
		g := g2
		body := map[string]any{"node_id": fmt.Sprint("m", i), "product_id": "fo",
			"auth_info": map[string]any{"secret": secret, "secure_access": false}}
		if i >= nMQTT {
			body = map[string]any{"node_id": fmt.Sprint("e", i-nMQTT), "product_id": "nb",
				"auth_info": map[string]any{"secret": pskSecret, "secure_access": false}}
		}
		if st, out := g.Do("POST", g.P("/devices"), body); st != http.StatusCreated {
			return fmt.Errorf("create %v: %d %v", body["node_id"], st, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("created %d devices in %v", nMQTT+nLwM2M, time.Since(start).Round(time.Millisecond))

	// Every device connects to node 1.
	var (
		mu      sync.Mutex
		clients []paho.Client // every MQTT client, to disconnect at the end
		lw      = make([]*lwm2mclient.Client, nLwM2M)
	)
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range clients {
			c.Disconnect(0)
		}
		for _, c := range lw {
			if c != nil {
				c.Close()
			}
		}
	})
	lost := make(chan int, nMQTT)
	start = time.Now()
	err = parallel(nMQTT+nLwM2M, func(i int) error {
		if i < nMQTT {
			c, err := connectMQTT(g1, mqttID(i), secret, func() { lost <- i })
			if err != nil {
				return err
			}
			mu.Lock()
			clients = append(clients, c)
			mu.Unlock()
			return nil
		}
		i -= nMQTT
		c, err := lwm2mclient.Dial(context.Background(), lwm2mclient.Config{Server: g1.CoAP,
			Endpoint: fmt.Sprint("e", i), Lifetime: 300, RequestTimeout: 2 * time.Second})
		if err != nil {
			return err
		}
		lw[i] = c
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Register(ctx); err != nil {
			return fmt.Errorf("register e%d with node 1: %w", i, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%v; node 1:\n%s", err, tail(g1.Logs(), 4000))
	}
	t.Logf("connected %d MQTT and %d LwM2M devices to node 1 in %v", nMQTT, nLwM2M, time.Since(start).Round(time.Millisecond))
	for _, id := range []string{mqttID(0), lwID(0), mqttID(nMQTT - 1), lwID(nLwM2M - 1)} {
		waitOnline(t, g3, id)
	}

	g1.Kill()
	killed := time.Now()

	// MQTT: a client whose connection drops connects to the next address.
	// LwM2M: a client's next exchange with node 1 (its update) gets no
	// answer, and it registers with the next address.
	var (
		back     atomic.Int64
		slowest  atomic.Int64 // ns after the kill
		moved    = make([]paho.Client, nMQTT)
		movedErr = make(chan error, nMQTT+nLwM2M)
	)
	var timesMu sync.Mutex
	times := map[string][]time.Duration{}
	done := func(kind string) {
		timesMu.Lock()
		times[kind] = append(times[kind], time.Since(killed))
		timesMu.Unlock()
		back.Add(1)
		for d := int64(time.Since(killed)); ; {
			cur := slowest.Load()
			if d <= cur || slowest.CompareAndSwap(cur, d) {
				break
			}
		}
	}
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		for range nMQTT {
			select {
			case i := <-lost:
				if i < nMQTT-failoverAway {
					jobs <- i
				}
			case <-time.After(10 * time.Second):
				return // a connection that never dropped: counted below
			}
		}
	}()
	var wg sync.WaitGroup
	for range failoverWorkers / 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				var err error
				for attempt := range 2 * len(survivors) {
					var c paho.Client
					if c, err = connectMQTT(survivors[(i+attempt)%len(survivors)], mqttID(i), secret, nil); err == nil {
						moved[i] = c
						done("MQTT")
						break
					}
				}
				if err != nil {
					movedErr <- err
				}
			}
		}()
	}
	// Each device finds node 1 gone on its own (all at once); their
	// re-registrations are bounded like the connects were.
	registering := make(chan struct{}, failoverWorkers)
	lwErr := parallelOn(nLwM2M, nLwM2M-failoverAway, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := lw[i].Update(ctx)
		cancel()
		if err == nil {
			return fmt.Errorf("e%d: node 1 answered an update after its kill", i)
		}
		registering <- struct{}{}
		defer func() { <-registering }()
		var last error
		for attempt := range 2 * len(survivors) {
			g := survivors[(i+attempt)%len(survivors)]
			c, err := lwm2mclient.Dial(context.Background(), lwm2mclient.Config{Server: g.CoAP,
				Endpoint: fmt.Sprint("e", i), Lifetime: 300, RequestTimeout: 2 * time.Second})
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			last = c.Register(ctx)
			cancel()
			if last == nil {
				old := lw[i]
				lw[i] = c // the cleanup's alone once parallel returns
				old.Close()
				done("LwM2M")
				return nil
			}
			c.Close()
		}
		return fmt.Errorf("re-register e%d: %w", i, last)
	})
	wg.Wait()
	close(movedErr)
	mu.Lock()
	for _, c := range moved {
		if c != nil {
			clients = append(clients, c)
		}
	}
	mu.Unlock()
	if lwErr != nil {
		t.Fatal(lwErr)
	}
	for err := range movedErr {
		t.Fatal(err)
	}
	for kind, ds := range times {
		slices.Sort(ds)
		t.Logf("%s: %d back, median %v, 99th percentile %v, last %v after the kill", kind, len(ds),
			ds[len(ds)/2].Round(time.Millisecond), ds[len(ds)*99/100].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	want := int64(nMQTT + nLwM2M - 2*failoverAway)
	took := time.Duration(slowest.Load())
	t.Logf("%d of %d devices back through nodes 2 and 3; the last %v after the kill", back.Load(), want, took.Round(time.Millisecond))
	if back.Load() != want {
		t.Fatalf("%d devices came back, want %d", back.Load(), want)
	}
	if took > 10*time.Second {
		t.Fatalf("the last device came back %v after the kill, want within 10 s", took)
	}

	// A synchronous command and an asynchronous READ through node 3 reach
	// devices that moved to node 2.
	answerCommands(t, moved[0], mqttID(0))
	if st, out := g3.Do("POST", g3.P("/devices/"+mqttID(0)+"/commands"),
		map[string]any{"service_id": "Basic", "command_name": "reboot", "paras": map[string]any{}}); st != http.StatusOK {
		t.Fatalf("command through node 3 to a device on node 2: %d %v", st, out)
	}
	cmd := g3.MustDo(http.StatusCreated, "POST", g3.P("/devices/"+lwID(0)+"/async-commands"), map[string]any{
		"service_id": "LwM2M", "command_name": "READ", "paras": map[string]any{"path": "/3/0/0"}, "send_strategy": "immediately"})
	res := waitCommand(t, g3, lwID(0), cmd["command_id"].(string), "SUCCESSFUL")["result"].(map[string]any)
	if vals, _ := res["values"].([]any); res["code"] != "2.05" || len(vals) != 1 {
		t.Fatalf("READ through node 3 of a device on node 2: %v", res)
	}

	// The devices that never came back read OFFLINE on both nodes once
	// node 1's last heartbeat (at most one interval before the kill) is
	// NodeLiveness old; a device that came back reads ONLINE.
	var away []string
	for i := range failoverAway {
		away = append(away, mqttID(nMQTT-1-i), lwID(nLwM2M-1-i))
	}
	deadline := killed.Add(failoverLiveness + 3*time.Second)
	for _, g := range survivors {
		for _, id := range away {
			for {
				st := deviceStatus(t, g, id)
				if st == "OFFLINE" {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s reads %s %v after node 1's kill, want OFFLINE", id, st, time.Since(killed).Round(time.Millisecond))
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	t.Logf("devices of the dead node read OFFLINE %v after the kill", time.Since(killed).Round(time.Millisecond))
	// A command to one is refused as to any offline device, at once.
	if st, out := g3.Do("POST", g3.P("/devices/"+away[0]+"/commands"),
		map[string]any{"service_id": "Basic", "command_name": "reboot", "paras": map[string]any{}}); st != http.StatusForbidden || out["error_code"] != "IOTDA.014016" {
		t.Fatalf("command to a device of the dead node: %d %v, want 403 IOTDA.014016", st, out)
	}
	for _, id := range []string{mqttID(0), mqttID(1), lwID(0), lwID(1)} {
		if st := deviceStatus(t, g2, id); st != "ONLINE" {
			t.Fatalf("%s came back but reads %s", id, st)
		}
	}

	// The status history of each device that never came back ends
	// OFFLINE (written by the node that ends a dead node's sessions); that
	// of one that came back ends ONLINE.
	last := map[string]string{}
	for deadline = time.Now().Add(5 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		evs, _ := g3.readEvents("")
		clear(last)
		for _, e := range evs {
			if e.Resource != "device.status" {
				continue
			}
			var b struct {
				Status string `json:"status"`
			}
			if err := json.Unmarshal(e.NotifyData.Body, &b); err != nil {
				t.Fatal(err)
			}
			last[e.NotifyData.Header.DeviceID] = b.Status
		}
		missing := ""
		for _, id := range away {
			if last[id] != "OFFLINE" {
				missing = id
			}
		}
		if missing == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the status events of %s end %q, want OFFLINE", missing, last[missing])
		}
	}
	for _, id := range []string{mqttID(0), lwID(0)} {
		if last[id] != "ONLINE" {
			t.Fatalf("the status events of %s, which came back, end %q", id, last[id])
		}
	}
}
