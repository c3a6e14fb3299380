package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// The receiver mode (-forward): the fleet is its own forwarding
// destination. It starts a receiver on loopback (an HTTP server, or
// franz-go's kfake broker in this process), points a routing rule on
// device.property/report at it through the API, and measures how many of
// the held fleet's uplinks are pushed per second and how long after the
// device's publish each push arrives. The uplinks carry their publish
// time (stampKey), so the figure is the whole added path: MQTT, the
// gate's commit, the forwarding worker and the push.

const (
	forwardHTTP  = "http"
	forwardKafka = "kafka"
	// stampKey is the uplink property holding the device's publish time,
	// microseconds since the epoch (exact in a float64, should the gate
	// ever decode the number).
	stampKey     = "sent_us"
	forwardTopic = "iotgate-fleet"
)

// ForwardSummary is what the receiver saw.
type ForwardSummary struct {
	Channel string `json:"channel"`
	// Received counts pushes (HTTP requests, Kafka records) carrying a
	// fleet uplink; Unstamped, others (not the fleet's, or unreadable).
	Received  int `json:"received"`
	Unstamped int `json:"unstamped,omitempty"`
	// PerSecond is Received over Seconds, from the hold's start to the
	// last push.
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	// AfterHoldSeconds is how long the last push arrived after the hold
	// ended: about 0 when the destination (and the gate) kept up.
	AfterHoldSeconds float64 `json:"after_hold_seconds"`
	// Latency is each push's arrival after the device's publish.
	Latency *Latency `json:"added_latency,omitempty"`
}

// sentStamp reads the publish time a fleet uplink carries from a pushed
// message (an IoTDA push envelope, whose body holds the reported
// properties).
func sentStamp(b []byte) (time.Time, bool) {
	key := []byte(`"` + stampKey + `"`)
	i := bytes.Index(b, key)
	if i < 0 {
		return time.Time{}, false
	}
	b = bytes.TrimLeft(b[i+len(key):], " \t\r\n")
	if len(b) == 0 || b[0] != ':' {
		return time.Time{}, false
	}
	b = bytes.TrimLeft(b[1:], " \t\r\n")
	n := 0
	for n < len(b) && bytes.IndexByte([]byte("0123456789.eE+-"), b[n]) >= 0 {
		n++
	}
	f, err := strconv.ParseFloat(string(b[:n]), 64)
	if err != nil || f <= 0 {
		return time.Time{}, false
	}
	return time.UnixMicro(int64(f)), true
}

// forwardReceiver counts pushes and their added latency.
type forwardReceiver struct {
	lat       *samples
	mu        sync.Mutex
	unstamped int
	last      time.Time
}

func newForwardReceiver() *forwardReceiver { return &forwardReceiver{lat: newSamples()} }

// push records one pushed message received at now.
func (r *forwardReceiver) push(now time.Time, body []byte) {
	sent, ok := sentStamp(body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !ok {
		r.unstamped++
		return
	}
	if now.After(r.last) {
		r.last = now
	}
	r.lat.ok(max(0, now.Sub(sent)))
}

func (r *forwardReceiver) received() int {
	n, _ := r.lat.counts()
	return n
}

// summary summarises the pushes of a hold that ran from start to end.
func (r *forwardReceiver) summary(channel string, start, end time.Time) *ForwardSummary {
	r.mu.Lock()
	last, unstamped := r.last, r.unstamped
	r.mu.Unlock()
	d := end.Sub(start)
	if last.After(end) {
		d = last.Sub(start)
	}
	o := r.lat.outcome(d)
	s := &ForwardSummary{Channel: channel, Received: o.OK, Unstamped: unstamped, Seconds: o.Seconds,
		PerSecond: o.PerSecond, Latency: o.Latency}
	if last.After(end) {
		s.AfterHoldSeconds = round3(last.Sub(end).Seconds())
	}
	return s
}

// forwarder is a running receiver and the rule that feeds it.
type forwarder struct {
	channel          string
	recv             *forwardReceiver
	rest             *restClient
	ruleID, actionID string
	stop             []func()
}

// startForwarding starts the receiver for channel and creates a rule on
// the fleet's property reports with one action pushing to it.
func startForwarding(ctx context.Context, rest *restClient, channel string, partitions int) (*forwarder, error) {
	f := &forwarder{channel: channel, recv: newForwardReceiver(), rest: rest}
	var detail map[string]any
	var err error
	switch channel {
	case forwardHTTP:
		detail, err = f.startHTTP()
	case forwardKafka:
		detail, err = f.startKafka(partitions)
	default:
		err = fmt.Errorf("-forward %q: want %s or %s", channel, forwardHTTP, forwardKafka)
	}
	if err != nil {
		f.close()
		return nil, err
	}
	var rule struct {
		RuleID string `json:"rule_id"`
	}
	if err := rest.do(ctx, http.MethodPost, "/routing-rule/rules", map[string]any{
		"rule_name": "iotgate-fleet", "subject": map[string]any{"resource": "device.property", "event": "report"},
		"app_type": "GLOBAL", "active": true,
	}, http.StatusCreated, &rule); err != nil {
		f.close()
		return nil, fmt.Errorf("create routing rule: %w", err)
	}
	f.ruleID = rule.RuleID
	var action struct {
		ActionID string `json:"action_id"`
	}
	if err := rest.do(ctx, http.MethodPost, "/routing-rule/actions", map[string]any{
		"rule_id": f.ruleID, "channel": detailChannel(channel), "channel_detail": detail,
	}, http.StatusCreated, &action); err != nil {
		f.close()
		return nil, fmt.Errorf("create routing action: %w", err)
	}
	f.actionID = action.ActionID
	return f, nil
}

func detailChannel(channel string) string {
	if channel == forwardKafka {
		return "DMS_KAFKA_FORWARDING"
	}
	return "HTTP_FORWARDING"
}

// startHTTP serves pushes on a loopback port (keep-alive, as net/http
// does by default).
func (f *forwarder) startHTTP() (map[string]any, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("receiver: %w", err)
	}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f.recv.push(time.Now(), b)
	})}
	go func() { _ = srv.Serve(ln) }()
	f.stop = append(f.stop, func() { _ = srv.Close() })
	return map[string]any{"http_forwarding": map[string]any{"url": "http://" + ln.Addr().String() + "/push"}}, nil
}

// startKafka starts a kfake broker and a consumer of its topic. A
// record's arrival is when the consumer fetched it: an upper bound of
// when the broker acknowledged it.
func (f *forwarder) startKafka(partitions int) (map[string]any, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(int32(max(1, partitions)), forwardTopic))
	if err != nil {
		return nil, fmt.Errorf("kfake: %w", err)
	}
	f.stop = append(f.stop, c.Close)
	addr := c.ListenAddrs()[0]
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.ConsumeTopics(forwardTopic), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			fs := cl.PollFetches(context.Background())
			if fs.IsClientClosed() {
				return
			}
			now := time.Now()
			fs.EachRecord(func(r *kgo.Record) { f.recv.push(now, r.Value) })
		}
	}()
	// The consumer stops before the broker (stop runs in reverse).
	f.stop = append(f.stop, func() { cl.Close(); <-done })
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	p, err := strconv.Atoi(port)
	if err != nil {
		return nil, err
	}
	return map[string]any{"dms_kafka_forwarding": map[string]any{
		"addresses": []any{map[string]any{"ip": host, "port": p}}, "topic": forwardTopic}}, nil
}

// wait waits until want pushes arrived or for at most d.
func (f *forwarder) wait(ctx context.Context, want int, d time.Duration) {
	deadline := time.Now().Add(d)
	for f.recv.received() < want && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

// close deletes the action and rule and stops the receiver.
func (f *forwarder) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var errs []error
	if f.actionID != "" {
		errs = append(errs, f.rest.do(ctx, http.MethodDelete, "/routing-rule/actions/"+url.PathEscape(f.actionID), nil, http.StatusNoContent, nil))
	}
	if f.ruleID != "" {
		errs = append(errs, f.rest.do(ctx, http.MethodDelete, "/routing-rule/rules/"+url.PathEscape(f.ruleID), nil, http.StatusNoContent, nil))
	}
	for i := len(f.stop) - 1; i >= 0; i-- {
		f.stop[i]()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("delete routing rule: %w", err)
	}
	return nil
}
