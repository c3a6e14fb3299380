// Command forwarding measures data forwarding over HTTP on a running
// iotgate (BENCHMARKS.md, "Data forwarding"): it creates 64 MQTT devices
// and a rule whose HTTP action points at a port nobody listens on yet,
// publishes 32,000 QoS 1 uplinks (the backlog), then opens its receiver
// and times the drain; then it publishes 32,000 more with the receiver up
// and reports how long after each event's time (event_time_ms) its push
// arrived. Loopback only; every loop is bounded.
//
//	go run ./test/bench/forwarding API TOKEN PROJECT MQTT_ADDR [kafka]
//
// With steady, it measures the latency forwarding adds to a steady
// stream instead: 8 devices publish RATE uplinks a second in all (env
// RATE, default 200) for SECONDS (default 20) with the receiver up from
// the start, and it reports how long after each event's time
// (event_time_ms) and after its publish its push arrived.
//
//	go run ./test/bench/forwarding API TOKEN PROJECT MQTT_ADDR steady
//
// With kafka, the action is DMS_KAFKA_FORWARDING to franz-go's kfake
// broker, started in this process on a port chosen up front once the
// backlog is built; a push's time is its record's timestamp (set by
// iotgate's producer).
//
// The gate needs limits.mqtt.uplink_rate/uplink_burst raised and
// forwarding.retry_max short (1s), so the action notices the receiver.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

var api, token, project, mqttAddr string

func do(method, path string, body any) map[string]any {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, api+"/v5/iot/"+project+path, bytes.NewReader(b))
	req.Header.Set("X-Auth-Token", token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	if resp.StatusCode >= 300 {
		panic(fmt.Sprint(resp.StatusCode, out))
	}
	return out
}

const devices, per, window = 64, 500, 32

func publish(round int) time.Duration {
	ts := time.Now().UTC().Format("2006010215")
	var wg sync.WaitGroup
	start := time.Now()
	for d := range devices {
		wg.Go(func() {
			id := fmt.Sprintf("mz_n%d", d)
			m := hmac.New(sha256.New, []byte(ts))
			m.Write([]byte("measureSecret01"))
			o := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(id + "_0_0_" + ts).SetUsername(id).
				SetPassword(hex.EncodeToString(m.Sum(nil))).SetAutoReconnect(false).SetOrderMatters(false)
			c := paho.NewClient(o)
			if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
				panic(t.Error())
			}
			defer c.Disconnect(0)
			var inflight []paho.Token
			for i := range per {
				inflight = append(inflight, c.Publish("$oc/devices/"+id+"/sys/messages/up", 1, false, fmt.Sprintf(`{"r":%d,"i":%d,"t":%d}`, round, i, time.Now().UnixNano())))
				if len(inflight) == window {
					inflight[0].Wait()
					inflight = inflight[1:]
				}
			}
			for _, t := range inflight {
				t.Wait()
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}

func main() {
	if len(os.Args) != 5 && (len(os.Args) != 6 || (os.Args[5] != "kafka" && os.Args[5] != "steady")) {
		fmt.Fprintln(os.Stderr, "usage: forwarding API TOKEN PROJECT MQTT_ADDR [kafka|steady]")
		os.Exit(2)
	}
	api, token, project, mqttAddr = os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	if len(os.Args) == 6 && os.Args[5] == "steady" {
		steady()
		return
	}
	kafka := len(os.Args) == 6
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	do("POST", "/products", map[string]any{"product_id": "mz", "name": "M", "device_type": "x", "protocol_type": "MQTT",
		"service_capabilities": []any{map[string]any{"service_id": "B", "service_type": "B"}}})
	for d := range devices {
		do("POST", "/devices", map[string]any{"node_id": fmt.Sprintf("n%d", d), "product_id": "mz", "auth_info": map[string]any{"secret": "measureSecret01", "secure_access": false}})
	}
	rule := do("POST", "/routing-rule/rules", map[string]any{"subject": map[string]any{"resource": "device.message", "event": "report"}, "active": true})
	if kafka {
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		do("POST", "/routing-rule/actions", map[string]any{"rule_id": rule["rule_id"], "channel": "DMS_KAFKA_FORWARDING",
			"channel_detail": map[string]any{"dms_kafka_forwarding": map[string]any{"addresses": []any{map[string]any{"ip": host, "port": p}}, "topic": "up"}}})
	} else {
		do("POST", "/routing-rule/actions", map[string]any{"rule_id": rule["rule_id"], "channel": "HTTP_FORWARDING",
			"channel_detail": map[string]any{"http_forwarding": map[string]any{"url": "http://" + addr + "/push"}}})
	}
	time.Sleep(2 * time.Second)
	// Backlog while the receiver is down.
	d := publish(0)
	fmt.Printf("backlog: %d uplinks published in %v (%.0f/s)\n", devices*per, d, float64(devices*per)/d.Seconds())
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var first, last time.Time
	onPush := func(now time.Time, b []byte) {
		var e struct {
			EventTimeMs string `json:"event_time_ms"`
			NotifyData  struct {
				Body struct {
					Content struct {
						R, I int
						T    int64
					} `json:"content"`
				} `json:"body"`
			} `json:"notify_data"`
		}
		_ = json.Unmarshal(b, &e)
		mu.Lock()
		if first.IsZero() {
			first = now
		}
		if now.After(last) {
			last = now
		}
		if e.NotifyData.Body.Content.R == 1 {
			at, _ := time.Parse("2006-01-02T15:04:05.000Z", e.EventTimeMs)
			lat = append(lat, now.Sub(at))
		}
		mu.Unlock()
		n.Add(1)
	}
	if kafka {
		_, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(p), kfake.SeedTopics(8, "up"))
		if err != nil {
			panic(err)
		}
		// Records produced while the broker was down carry the time of
		// their first attempt: the drain is timed from the broker's start.
		mu.Lock()
		first = time.Now()
		mu.Unlock()
		defer c.Close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics("up"))
		if err != nil {
			panic(err)
		}
		defer cl.Close()
		go func() {
			for {
				fs := cl.PollFetches(context.Background())
				if fs.IsClientClosed() {
					return
				}
				fs.EachRecord(func(r *kgo.Record) { onPush(r.Timestamp, r.Value) })
			}
		}()
	} else {
		srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			onPush(time.Now(), b)
		})}
		go func() { _ = srv.ListenAndServe() }()
	}
	deadline := time.Now().Add(5 * time.Minute)
	for n.Load() < devices*per && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	fmt.Printf("drain: %d pushes in %v (%.0f/s)\n", devices*per, last.Sub(first), float64(devices*per)/last.Sub(first).Seconds())
	mu.Unlock()
	// Live: the receiver keeps up.
	d = publish(1)
	for n.Load() < 2*devices*per && time.Now().Before(deadline.Add(5*time.Minute)) {
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	fmt.Printf("live: %d uplinks published in %v (%.0f/s); push latency after the event's commit (event_time_ms) p50 %v p99 %v max %v\n", devices*per, d,
		float64(devices*per)/d.Seconds(), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	mu.Unlock()
}

// connect connects device id (secret measureSecret01) over MQTT.
func connect(id string) paho.Client {
	ts := time.Now().UTC().Format("2006010215")
	m := hmac.New(sha256.New, []byte(ts))
	m.Write([]byte("measureSecret01"))
	o := paho.NewClientOptions().AddBroker("tcp://" + mqttAddr).SetClientID(id + "_0_0_" + ts).SetUsername(id).
		SetPassword(hex.EncodeToString(m.Sum(nil))).SetAutoReconnect(false).SetOrderMatters(false)
	c := paho.NewClient(o)
	if t := c.Connect(); !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		panic(t.Error())
	}
	return c
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// steady measures the latency forwarding adds to a steady uplink stream.
func steady() {
	const devs = 8
	rate, seconds := envInt("RATE", 200), envInt("SECONDS", 20)
	var mu sync.Mutex
	var afterEvent, afterPublish []time.Duration
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		var e struct {
			EventTimeMs string `json:"event_time_ms"`
			NotifyData  struct {
				Body struct {
					Content struct{ T int64 } `json:"content"`
				} `json:"body"`
			} `json:"notify_data"`
		}
		b, _ := io.ReadAll(r.Body)
		_ = json.Unmarshal(b, &e)
		at, _ := time.Parse("2006-01-02T15:04:05.000Z", e.EventTimeMs)
		mu.Lock()
		afterEvent = append(afterEvent, now.Sub(at))
		afterPublish = append(afterPublish, now.Sub(time.Unix(0, e.NotifyData.Body.Content.T)))
		mu.Unlock()
	}))
	defer srv.Close()
	do("POST", "/products", map[string]any{"product_id": "ms", "name": "S", "device_type": "x", "protocol_type": "MQTT",
		"service_capabilities": []any{map[string]any{"service_id": "B", "service_type": "B"}}})
	for d := range devs {
		do("POST", "/devices", map[string]any{"node_id": fmt.Sprintf("n%d", d), "product_id": "ms", "auth_info": map[string]any{"secret": "measureSecret01", "secure_access": false}})
	}
	rule := do("POST", "/routing-rule/rules", map[string]any{"subject": map[string]any{"resource": "device.message", "event": "report"}, "active": true})
	do("POST", "/routing-rule/actions", map[string]any{"rule_id": rule["rule_id"], "channel": "HTTP_FORWARDING",
		"channel_detail": map[string]any{"http_forwarding": map[string]any{"url": srv.URL + "/push"}}})
	time.Sleep(2 * time.Second)
	per := rate * seconds / devs
	var wg sync.WaitGroup
	for d := range devs {
		wg.Go(func() {
			id := fmt.Sprintf("ms_n%d", d)
			c := connect(id)
			defer c.Disconnect(0)
			tick := time.NewTicker(time.Second * devs / time.Duration(rate))
			defer tick.Stop()
			var last paho.Token
			for range per {
				<-tick.C
				last = c.Publish("$oc/devices/"+id+"/sys/messages/up", 1, false, fmt.Sprintf(`{"t":%d}`, time.Now().UnixNano()))
			}
			last.WaitTimeout(10 * time.Second)
		})
	}
	wg.Wait()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mu.Lock()
		n := len(afterEvent)
		mu.Unlock()
		if n >= per*devs {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	q := func(l []time.Duration) string {
		sort.Slice(l, func(a, b int) bool { return l[a] < l[b] })
		return fmt.Sprintf("p50 %v p95 %v p99 %v max %v", l[len(l)/2], l[len(l)*95/100], l[len(l)*99/100], l[len(l)-1])
	}
	fmt.Printf("steady: %d uplinks at %d/s from %d devices, %d pushed\n", per*devs, rate, devs, len(afterEvent))
	fmt.Printf("push after the event's time (event_time_ms): %s\n", q(afterEvent))
	fmt.Printf("push after the device's publish: %s\n", q(afterPublish))
}
