package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/iotgate/iotgate/forwarding"
	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/metrics"
	"github.com/iotgate/iotgate/mqtt"
	"github.com/iotgate/iotgate/registry/guard"
)

// MetricsConfig places GET /metrics (README: Metrics).
type MetricsConfig struct {
	// Listen serves /metrics on its own TCP address; empty, the default,
	// serves it on the API listeners. Either way it needs an API token
	// unless the listener is bound to a loopback address.
	Listen string `yaml:"listen"`
}

// mqttStats reads the MQTT listener's figures for /metrics.
func mqttStats(s *mqtt.Server) func() metrics.ProtocolStats {
	return func() metrics.ProtocolStats {
		st := s.Stats()
		return metrics.ProtocolStats{Sessions: s.Connected(), Connects: st.Connects, AuthFailures: st.AuthFailures,
			MessagesIn: st.MessagesReceived, MessagesOut: st.MessagesSent}
	}
}

// lwm2mStats reads the LwM2M listener's figures for /metrics.
func lwm2mStats(s *lwm2m.Server) func() metrics.ProtocolStats {
	return func() metrics.ProtocolStats {
		st := s.Stats()
		return metrics.ProtocolStats{Sessions: s.Registered(), Connects: st.Registers, AuthFailures: st.AuthFailures,
			MessagesIn: st.MessagesIn, MessagesOut: st.MessagesOut}
	}
}

// metricsSources are what /metrics reads at each scrape: the listeners
// built (see listeners), the registry's commands, the guard's bans and
// the store's size.
func (w *wiring) metricsSources(store *openedStore, fwd *forwarding.Engine) metrics.Sources {
	src := metrics.Sources{Protocols: w.protocolStats, Commands: w.reg.CommandCounts, Bans: w.guard.Bans,
		StoreBytes: store.size}
	if w.descriptors != nil {
		src.Connections = w.descriptors.stats
	}
	if a, ok := w.guard.(interface{ AutoBans() map[string]uint64 }); ok {
		src.AutoBans = a.AutoBans
	}
	if fwd != nil {
		src.Forwarding = func(ctx context.Context) []metrics.ForwardingStats {
			head, err := w.reg.StreamHead(ctx)
			actions := fwd.Snapshot(time.Now())
			out := make([]metrics.ForwardingStats, 0, len(actions))
			for _, a := range actions {
				f := metrics.ForwardingStats{Action: a.ActionID, Delivered: a.Delivered, Failures: a.Failures,
					Dropped: a.Dropped, DroppedAge: a.DroppedAge, DroppedSize: a.DroppedSize, Lag: a.Lag}
				if err == nil && head > a.Cursor {
					f.Backlog = head - a.Cursor
				}
				out = append(out, f)
			}
			return out
		}
	}
	return src
}

// metricsHandler is /metrics for a listener bound to addr: open on
// loopback, else for holders of an API token.
func (w *wiring) metricsHandler(addr net.Addr) http.Handler {
	return w.metrics.Handler(metrics.HandlerOptions{Open: metrics.Loopback(addr), Tokens: w.apiTokens, Guard: w.guard})
}

// metricsServer binds metrics.listen and returns its server, to be run
// with Serve.
func (w *wiring) metricsServer() (*http.Server, net.Listener, error) {
	ln, err := net.Listen("tcp", w.cfg.Metrics.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics listen %s: %w", w.cfg.Metrics.Listen, err)
	}
	h := metrics.Mount(http.NotFoundHandler(), w.metricsHandler(ln.Addr()))
	ln = w.descriptors.forOps(ln)
	return &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}, ln, nil
}

// The guard is what the metrics handler asks of the abuse controls.
var _ metrics.Guard = guard.Guard(nil)
