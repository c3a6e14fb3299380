package metrics

import (
	"context"
	"time"

	"github.com/iotgate/iotgate/registry/guard"
	"github.com/prometheus/client_golang/prometheus"
)

// sourceCollector turns Sources into metrics at each scrape. The label
// values are fixed sets (protocols, results, reasons, statuses, rules),
// never a device's id: the series do not grow with the fleet.
type sourceCollector struct {
	src Sources

	sessions, connects, authFailures, messages *prometheus.Desc
	commands, bans, autoBans, storeBytes       *prometheus.Desc
	fwdDelivered, fwdFailures, fwdDropped      *prometheus.Desc
	fwdLag, fwdBacklog, fwdBacklogDropped      *prometheus.Desc
	poolLimit, poolOpen, poolRefused           *prometheus.Desc
}

func newSourceCollector(src Sources) *sourceCollector {
	d := prometheus.NewDesc
	return &sourceCollector{
		src:          src,
		sessions:     d("iotgate_sessions", "Devices connected (MQTT) or registered (LwM2M) on this node.", []string{"protocol"}, nil),
		connects:     d("iotgate_connects_total", "Connection attempts (MQTT CONNECTs, LwM2M Registers) by protocol and result.", []string{"protocol", "result"}, nil),
		authFailures: d("iotgate_auth_failures_total", "Failed device authentications by protocol and reason.", []string{"protocol", "reason"}, nil),
		messages:     d("iotgate_messages_total", "Messages from (in) and to (out) devices by protocol.", []string{"protocol", "direction"}, nil),
		commands:     d("iotgate_commands_total", "Commands that reached a final status, by kind (sync, async) and status.", []string{"kind", "status"}, nil),
		bans:         d("iotgate_bans", "Bans in force, by source (auto, manual) and target (identity, address).", []string{"source", "target"}, nil),
		autoBans:     d("iotgate_bans_imposed_total", "Automatic bans this node imposed, by rule.", []string{"rule"}, nil),
		storeBytes:   d("iotgate_store_size_bytes", "Size of the embedded store on disk (Badger's LSM tree and value log).", nil, nil),
		fwdDelivered: d("iotgate_forwarding_delivered_total", "Events a routing-rule action's destination acknowledged, on this node.", []string{"action"}, nil),
		fwdFailures:  d("iotgate_forwarding_failures_total", "Failed delivery attempts of a routing-rule action, on this node.", []string{"action"}, nil),
		fwdDropped:   d("iotgate_forwarding_dropped_total", "Stream positions trimmed before a routing-rule action delivered them (an upper bound on events lost).", []string{"action"}, nil),
		fwdLag:       d("iotgate_forwarding_lag_seconds", "Age of the oldest event a routing-rule action has read and not yet delivered; 0 when caught up.", []string{"action"}, nil),
		poolLimit:    d("iotgate_connection_pool_limit", "Accepted connections a pool of the descriptor budget may hold (limits.descriptors).", []string{"pool"}, nil),
		poolOpen:     d("iotgate_connection_pool_open", "Accepted connections a pool of the descriptor budget holds now.", []string{"pool"}, nil),
		poolRefused:  d("iotgate_connection_pool_refused_total", "Connections closed at accept because their pool or the process's descriptor budget was spent.", []string{"pool"}, nil),
		fwdBacklog:   d("iotgate_forwarding_backlog_positions", "Event stream positions after a routing-rule action's cursor (an upper bound on the events it has still to read).", []string{"action"}, nil),
		fwdBacklogDropped: d("iotgate_forwarding_backlog_dropped_total", "Messages a routing-rule action dropped undelivered because its backlog exceeded a bound, by bound (age, size), on this node.",
			[]string{"action", "bound"}, nil),
	}
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.connects, c.authFailures, c.messages, c.commands, c.bans, c.autoBans, c.storeBytes,
		c.fwdDelivered, c.fwdFailures, c.fwdDropped, c.fwdLag, c.fwdBacklog, c.fwdBacklogDropped, c.poolLimit, c.poolOpen, c.poolRefused} {
		ch <- d
	}
}

// banListTimeout bounds the read of the ban list (on a cluster's node it
// is in memory too; the bound is for a guard that would reach further)
// and of the event stream's head for the forwarding backlog.
const banListTimeout = 2 * time.Second

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	for proto, read := range c.src.Protocols {
		st := read()
		gauge(c.sessions, float64(st.Sessions), proto)
		for result, n := range st.Connects {
			counter(c.connects, n, proto, result)
		}
		for reason, n := range st.AuthFailures {
			counter(c.authFailures, n, proto, reason)
		}
		counter(c.messages, st.MessagesIn, proto, "in")
		counter(c.messages, st.MessagesOut, proto, "out")
	}
	if c.src.Commands != nil {
		for _, cc := range c.src.Commands() {
			counter(c.commands, cc.Count, string(cc.Kind), cc.Status)
		}
	}
	if c.src.Bans != nil {
		ctx, cancel := context.WithTimeout(context.Background(), banListTimeout)
		bans, err := c.src.Bans(ctx)
		cancel()
		if err != nil {
			ch <- prometheus.NewInvalidMetric(c.bans, err)
		} else {
			n := map[[2]string]int{}
			for _, s := range []guard.Source{guard.SourceAuto, guard.SourceManual} {
				n[[2]string{string(s), "identity"}], n[[2]string{string(s), "address"}] = 0, 0
			}
			for _, b := range bans {
				target := "address"
				if b.Identity != "" {
					target = "identity"
				}
				n[[2]string{string(b.Source), target}]++
			}
			for k, v := range n {
				gauge(c.bans, float64(v), k[0], k[1])
			}
		}
	}
	if c.src.AutoBans != nil {
		for rule, n := range c.src.AutoBans() {
			counter(c.autoBans, n, rule)
		}
	}
	if c.src.StoreBytes != nil {
		gauge(c.storeBytes, float64(c.src.StoreBytes()))
	}
	if c.src.Connections != nil {
		for _, p := range c.src.Connections() {
			gauge(c.poolLimit, float64(p.Limit), p.Pool)
			gauge(c.poolOpen, float64(p.Open), p.Pool)
			counter(c.poolRefused, p.Refused, p.Pool)
		}
	}
	if c.src.Forwarding != nil {
		ctx, cancel := context.WithTimeout(context.Background(), banListTimeout)
		actions := c.src.Forwarding(ctx)
		cancel()
		for _, a := range actions {
			counter(c.fwdDelivered, a.Delivered, a.Action)
			counter(c.fwdFailures, a.Failures, a.Action)
			counter(c.fwdDropped, a.Dropped, a.Action)
			gauge(c.fwdLag, a.Lag.Seconds(), a.Action)
			gauge(c.fwdBacklog, float64(a.Backlog), a.Action)
			counter(c.fwdBacklogDropped, a.DroppedAge, a.Action, "age")
			counter(c.fwdBacklogDropped, a.DroppedSize, a.Action, "size")
		}
	}
}
