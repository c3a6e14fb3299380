// Package metrics serves the platform's figures to Prometheus (GET
// /metrics). It keeps the three histograms observed on the platform's
// paths (store writes, group-commit transactions, DTLS handshakes) and,
// at each scrape, reads the counters the other packages keep (the
// protocol adapters' Stats, the registry's command counts, the guard's
// bans), so that counting costs those paths an atomic add and nothing
// else. It imports no protocol adapter and no storage engine:
// cmd/iotgate hands it functions that read them (Sources).
package metrics

import (
	"context"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics is one node's metrics: a Prometheus registry with the Go
// runtime and process collectors, the platform's histograms, and the
// collector of its Sources once added.
type Metrics struct {
	reg          *prometheus.Registry
	writes       prometheus.Histogram
	commits      prometheus.Histogram
	handshakes   *prometheus.HistogramVec
	handshakeObs map[string]prometheus.Observer // by result, resolved once
	fwdDelay     *prometheus.HistogramVec
}

// Handshake results, as lwm2m/transport names them (HandshakeOK, ...):
// the label values of iotgate_dtls_handshake_duration_seconds, made
// before the first handshake so that every series is there from the
// start.
var handshakeResults = []string{"ok", "failed", "abandoned"}

// New returns the metrics with no sources yet (see AddSources): the
// store, which needs the write observer, opens before the listeners that
// are sources exist.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		writes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "iotgate_store_write_duration_seconds",
			Help: "Time from a registry write's submission to its durable commit (or failure), group-commit wait included.",
			// 0.5 ms (an in-memory commit) to 4 s (a stalled disk).
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		commits: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "iotgate_store_commit_batch_size",
			Help:    "Registry writes carried by one group-commit transaction.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 9), // 1 to 256, the largest batch
		}),
		handshakes: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "iotgate_dtls_handshake_duration_seconds",
			Help: "DTLS handshakes by result (ok; failed after the client echoed its cookie; abandoned before it) and duration.",
			// 5 ms to 10 s, past the default handshake timeout.
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}, []string{"result"}),
		handshakeObs: make(map[string]prometheus.Observer, len(handshakeResults)),
		fwdDelay: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "iotgate_forwarding_delay_seconds",
			Help: "Time from an event's recording to its destination's acknowledgement, by routing-rule action, on this node.",
			// 1 ms (a pipelined push on a LAN) to 65 s, past an OFFLINE
			// event's default grace.
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 17),
		}, []string{"action"}),
	}
	for _, r := range handshakeResults {
		m.handshakeObs[r] = m.handshakes.WithLabelValues(r)
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.writes, m.commits, m.handshakes, m.fwdDelay,
	)
	return m
}

// Written observes one registry write's latency (groupcommit.Observer).
func (m *Metrics) Written(took time.Duration) { m.writes.Observe(took.Seconds()) }

// Committed observes one transaction's size (groupcommit.Observer).
func (m *Metrics) Committed(ops int) { m.commits.Observe(float64(ops)) }

// Handshake observes one DTLS handshake's end (lwm2m.Options.OnHandshake).
// A result outside the known set is not observed: the label set stays
// fixed.
func (m *Metrics) Handshake(result string, took time.Duration) {
	if o, ok := m.handshakeObs[result]; ok {
		o.Observe(took.Seconds())
	}
}

// ForwardDelivered observes one forwarded message's delay, from its
// event's time to its destination's acknowledgement
// (forwarding.Options.Delivered).
func (m *Metrics) ForwardDelivered(actionID string, delay time.Duration) {
	m.fwdDelay.WithLabelValues(actionID).Observe(delay.Seconds())
}

// ProtocolStats are one protocol adapter's figures at a scrape.
type ProtocolStats struct {
	// Sessions is the devices connected (MQTT) or registered (LwM2M) on
	// this node now.
	Sessions int
	// Connects counts connection attempts (MQTT CONNECTs, LwM2M
	// Registers) by result; AuthFailures failed authentications by
	// reason. The adapter fixes the keys: every one is present, so that
	// a series exists before its first event.
	Connects     map[string]uint64
	AuthFailures map[string]uint64
	// MessagesIn and MessagesOut count the messages from and to devices.
	MessagesIn, MessagesOut uint64
}

// Sources read, at each scrape, the counters other packages keep. A nil
// field is left out.
type Sources struct {
	// Protocols reads each protocol's figures, by protocol name ("mqtt",
	// "lwm2m").
	Protocols map[string]func() ProtocolStats
	// Commands reads the registry's counts of ended commands.
	Commands func() []registry.CommandCount
	// Bans lists the bans in force; AutoBans counts the automatic bans
	// imposed since start, by rule.
	Bans     func(context.Context) ([]guard.Ban, error)
	AutoBans func() map[string]uint64
	// StoreBytes is the storage engine's size on disk.
	StoreBytes func() int64
	// Forwarding reads the routing-rule actions this node delivers.
	Forwarding func(context.Context) []ForwardingStats
	// Connections reads the pools of the descriptor budget for
	// accepted connections.
	Connections func() []ConnectionPool
}

// ConnectionPool is one pool of the descriptor budget for accepted
// connections ("mqtt", "api", "operator"): its cap, the connections it
// holds, and those closed at accept because it or the budget was spent.
type ConnectionPool struct {
	Pool        string
	Limit, Open int
	Refused     uint64
}

// ForwardingStats is one routing-rule action's delivery on this node.
// Actions are few and named by the operator, so they label series.
type ForwardingStats struct {
	Action                       string
	Delivered, Failures, Dropped uint64
	// DroppedAge and DroppedSize are the messages the action's backlog
	// bounds dropped undelivered (too old, beyond the size bound).
	DroppedAge, DroppedSize uint64
	// Lag is the age of the oldest event not yet delivered; Backlog the
	// stream positions after the action's cursor (an upper bound on the
	// events it has still to read: positions are shared by every project
	// and have gaps).
	Lag     time.Duration
	Backlog uint64
}

// AddSources registers the collector that reads src at each scrape. Call
// it once, before serving.
func (m *Metrics) AddSources(src Sources) error {
	return m.reg.Register(newSourceCollector(src))
}

// Gatherer is the registry the handler serves (tests read it directly).
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.reg }
