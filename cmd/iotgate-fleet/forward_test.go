package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

func TestSentStamp(t *testing.T) {
	at := time.UnixMicro(1_765_000_000_123_456)
	// The fleet's payload as the gate pushes it: inside an envelope, its
	// properties re-encoded.
	envelope := `{"resource":"device.property","event":"report","notify_data":{"header":{"device_id":"d"},"body":{"services":[{"service_id":"Fleet","properties":` +
		`{"seq":3,"sent_us":1765000000123456},"event_time":"20261207T120000Z"}]}}}`
	for _, tc := range []struct {
		name string
		in   string
		want time.Time
		ok   bool
	}{
		{"fleet payload", string(uplinkPayload(3, at)), at, true},
		{"push envelope", envelope, at, true},
		{"spaces around the colon", `{"sent_us" :  1765000000123456}`, at, true},
		{"exponent form", `{"sent_us":1.765000000123456e15}`, at, true},
		{"no stamp", `{"seq":1}`, time.Time{}, false},
		{"not a number", `{"sent_us":"soon"}`, time.Time{}, false},
		{"zero", `{"sent_us":0}`, time.Time{}, false},
		{"negative", `{"sent_us":-5}`, time.Time{}, false},
		{"key without a value", `{"sent_us"`, time.Time{}, false},
		{"empty", ``, time.Time{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := sentStamp([]byte(tc.in))
			if ok != tc.ok || !got.Equal(tc.want) {
				t.Fatalf("sentStamp(%s) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestForwardReceiverSummary(t *testing.T) {
	start := time.Unix(1_765_000_000, 0)
	end := start.Add(10 * time.Second)
	stamp := func(at time.Time) []byte { return uplinkPayload(0, at) }
	for _, tc := range []struct {
		name   string
		pushes func(r *forwardReceiver)
		want   ForwardSummary
	}{
		{"kept up: 100 pushes, 1 to 100 ms after their publish", func(r *forwardReceiver) {
			for i := 1; i <= 100; i++ {
				sent := start.Add(time.Duration(i) * 50 * time.Millisecond)
				r.push(sent.Add(time.Duration(i)*time.Millisecond), stamp(sent))
			}
		}, ForwardSummary{Channel: "http", Received: 100, Seconds: 10, PerSecond: 10,
			Latency: &Latency{P50: 50, P95: 95, P99: 99, Max: 100}}},
		{"behind: the last push 5 s after the hold, one unstamped", func(r *forwardReceiver) {
			r.push(end.Add(5*time.Second), stamp(end.Add(-time.Second)))
			r.push(start.Add(time.Second), []byte(`{"seq":1}`))
			r.push(start.Add(2*time.Second), stamp(start.Add(time.Second)))
		}, ForwardSummary{Channel: "http", Received: 2, Unstamped: 1, Seconds: 15, PerSecond: 0.133, AfterHoldSeconds: 5,
			Latency: &Latency{P50: 1000, P95: 6000, P99: 6000, Max: 6000}}},
		{"a push stamped after its arrival (clocks) counts as 0", func(r *forwardReceiver) {
			r.push(start.Add(time.Second), stamp(start.Add(2*time.Second)))
		}, ForwardSummary{Channel: "http", Received: 1, Seconds: 10, PerSecond: 0.1, Latency: &Latency{}}},
		{"nothing pushed", func(*forwardReceiver) {}, ForwardSummary{Channel: "http", Seconds: 10}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newForwardReceiver()
			tc.pushes(r)
			got := r.summary("http", start, end)
			g, _ := json.Marshal(got)
			w, _ := json.Marshal(tc.want)
			if string(g) != string(w) {
				t.Fatalf("summary\n got %s\nwant %s", g, w)
			}
		})
	}
}

// fakeRoutingAPI answers the routing calls the receiver mode makes and
// keeps the rule and action it was given.
type fakeRoutingAPI struct {
	mu      sync.Mutex
	rule    map[string]any
	action  map[string]any
	deleted []string
}

func (a *fakeRoutingAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if r.Header.Get("X-Auth-Token") != "tok" {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var body map[string]any
	b, _ := io.ReadAll(r.Body)
	_ = json.Unmarshal(b, &body)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v5/iot/p/routing-rule/rules":
		a.rule = body
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"rule_id":"r1"}`)
	case r.Method == http.MethodPost && r.URL.Path == "/v5/iot/p/routing-rule/actions":
		a.action = body
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"action_id":"a1"}`)
	case r.Method == http.MethodDelete:
		a.deleted = append(a.deleted, strings.TrimPrefix(r.URL.Path, "/v5/iot/p/routing-rule/"))
		w.WriteHeader(http.StatusNoContent)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func TestForwardingReceivers(t *testing.T) {
	for _, channel := range []string{forwardHTTP, forwardKafka} {
		t.Run(channel, func(t *testing.T) {
			api := &fakeRoutingAPI{}
			srv := httptest.NewServer(api)
			defer srv.Close()
			rest, err := newRESTClient(srv.URL, "p", "tok", 1, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			f, err := startForwarding(ctx, rest, channel, 2)
			if err != nil {
				t.Fatal(err)
			}
			subject := api.rule["subject"].(map[string]any)
			if subject["resource"] != "device.property" || subject["event"] != "report" || api.rule["active"] != true {
				t.Fatalf("rule %v: want an active device.property/report rule", api.rule)
			}
			if api.action["rule_id"] != "r1" || api.action["channel"] != detailChannel(channel) {
				t.Fatalf("action %v: want rule r1, channel %s", api.action, detailChannel(channel))
			}
			// Push what the gate would, to where the action points.
			detail := api.action["channel_detail"].(map[string]any)
			sent := time.Now().Add(-30 * time.Millisecond)
			for i := range 3 {
				push := uplinkPayload(int64(i), sent)
				if channel == forwardHTTP {
					u := detail["http_forwarding"].(map[string]any)["url"].(string)
					if !strings.HasPrefix(u, "http://127.0.0.1:") {
						t.Fatalf("receiver URL %s not on loopback", u)
					}
					resp, err := http.Post(u, "application/json", strings.NewReader(string(push)))
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("push answered %d", resp.StatusCode)
					}
				} else {
					k := detail["dms_kafka_forwarding"].(map[string]any)
					a := k["addresses"].([]any)[0].(map[string]any)
					cl, err := kgo.NewClient(kgo.SeedBrokers(fmt.Sprintf("%s:%v", a["ip"], a["port"])))
					if err != nil {
						t.Fatal(err)
					}
					err = cl.ProduceSync(ctx, &kgo.Record{Topic: k["topic"].(string), Value: push}).FirstErr()
					cl.Close()
					if err != nil {
						t.Fatal(err)
					}
				}
			}
			f.wait(ctx, 3, 10*time.Second)
			s := f.recv.summary(channel, sent, time.Now())
			if s.Received != 3 || s.Latency == nil || s.Latency.P50 < 30 || s.Latency.Max > 10_000 {
				t.Fatalf("summary %+v (latency %+v): want 3 pushes, at least 30 ms after their stamp", s, s.Latency)
			}
			if err := f.close(); err != nil {
				t.Fatal(err)
			}
			if want := "actions/a1 rules/r1"; strings.Join(api.deleted, " ") != want {
				t.Fatalf("deleted %v; want %s", api.deleted, want)
			}
		})
	}
}

func TestForwardOptions(t *testing.T) {
	creds := []string{"-project", "p", "-token", "t"}
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{append([]string{"-forward", "http"}, creds...), true},
		{append([]string{"-forward", "kafka", "-protocols", "mqtt,mqtts"}, creds...), true},
		{append([]string{"-forward", "nats"}, creds...), false},
		{append([]string{"-forward", "http", "-protocols", "coap"}, creds...), false},
		{[]string{"-forward", "http", "-api", ""}, false},
	} {
		if _, err := parseOptions(tc.args); (err == nil) != tc.ok {
			t.Errorf("%v: err = %v", tc.args, err)
		}
	}
}
