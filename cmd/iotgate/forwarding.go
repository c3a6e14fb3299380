package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/iotgate/iotgate/forwarding"
	"github.com/iotgate/iotgate/forwarding/httpchan"
	"github.com/iotgate/iotgate/forwarding/kafkachan"
	"github.com/iotgate/iotgate/forwarding/natschan"
	"github.com/iotgate/iotgate/registry"
)

// ForwardingConfig tunes the delivery of routing rules' actions
// (package forwarding); the backlog each action may build up is bounded
// by events.retention and events.max_events.
type ForwardingConfig struct {
	// Enabled runs the delivery engine on this node (on a cluster, each
	// action runs on one node, chosen by lease).
	Enabled bool `yaml:"enabled"`
	// Reload: how often new, changed and deleted actions are picked up.
	Reload time.Duration `yaml:"reload"`
	// Poll: how long a caught-up action waits before reading the stream
	// again (the latency added to a push at most).
	Poll time.Duration `yaml:"poll"`
	// Lanes: concurrent in-order streams (by device) per action.
	Lanes int `yaml:"lanes"`
	// RetryBase and RetryMax: backoff after a failed push, doubling from
	// RetryBase up to RetryMax (IoTDA retries a failing destination every
	// 3 minutes).
	RetryBase time.Duration `yaml:"retry_base"`
	RetryMax  time.Duration `yaml:"retry_max"`
	// DrainRate: messages per second per action after a failure, until
	// the backlog is drained.
	DrainRate float64 `yaml:"drain_rate"`
	// PushTimeout: an HTTP push not answered 2xx within it failed; it
	// bounds a NATS publish (and its JetStream ack) and a Kafka produce
	// (and its acks=all) likewise.
	PushTimeout time.Duration `yaml:"push_timeout"`
}

func defaultForwarding() ForwardingConfig {
	return ForwardingConfig{Enabled: true, Reload: forwarding.DefaultReload, Poll: forwarding.DefaultPoll,
		Lanes: forwarding.DefaultLanes, RetryBase: forwarding.DefaultRetryBase, RetryMax: forwarding.DefaultRetryMax,
		DrainRate: forwarding.DefaultDrainRate, PushTimeout: httpchan.DefaultTimeout}
}

func (c ForwardingConfig) validate() error {
	switch {
	case c.Reload <= 0 || c.Poll <= 0 || c.RetryBase <= 0 || c.PushTimeout <= 0:
		return errors.New("config: forwarding.reload, poll, retry_base and push_timeout must be positive")
	case c.RetryMax < c.RetryBase:
		return errors.New("config: forwarding.retry_max must be at least retry_base")
	case c.Lanes < 1 || c.Lanes > 1024:
		return errors.New("config: forwarding.lanes must be 1 to 1024")
	case c.DrainRate <= 0:
		return errors.New("config: forwarding.drain_rate must be positive")
	}
	return nil
}

// newForwarding builds the delivery engine (package forwarding), nil when
// forwarding is off; runForwarding runs it. lease elects the node of each
// action (nil on a single node).
func newForwarding(c ForwardingConfig, reg *registry.Registry, lease registry.Lease, log *slog.Logger) *forwarding.Engine {
	if !c.Enabled {
		return nil
	}
	return forwarding.New(forwarding.Options{Registry: reg, Lease: lease, Logger: log.With("component", "forwarding"),
		Reload: c.Reload, Poll: c.Poll, Lanes: c.Lanes, RetryBase: c.RetryBase, RetryMax: c.RetryMax, DrainRate: c.DrainRate,
		Openers: map[string]forwarding.Opener{
			registry.ChannelHTTP:  httpchan.Opener(httpchan.Options{CAs: reg, Timeout: c.PushTimeout, MaxConns: c.Lanes}),
			registry.ChannelNATS:  natschan.Opener(natschan.Options{Timeout: c.PushTimeout}),
			registry.ChannelKafka: kafkachan.Opener(kafkachan.Options{Timeout: c.PushTimeout}),
		}})
}

// runForwarding runs e (if any) until ctx ends; the returned function
// waits for it to stop.
func runForwarding(ctx context.Context, e *forwarding.Engine) (wait func()) {
	if e == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	return func() { <-done }
}
