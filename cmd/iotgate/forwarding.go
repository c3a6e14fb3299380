package main

import (
	"context"
	"errors"
	"fmt"
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
// by Backlog, and by events.retention and events.max_events.
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
	Backlog     BacklogConfig `yaml:"backlog"`
}

// BacklogConfig bounds what each action keeps undelivered: past either
// bound, the oldest messages are dropped, counted and logged.
type BacklogConfig struct {
	MaxAge  time.Duration `yaml:"max_age"`
	MaxSize int64         `yaml:"max_size"`
	// Check: how often an action behind the stream measures its backlog
	// against max_size.
	Check time.Duration `yaml:"check"`
	// Channels overrides the bounds for the actions of a channel.
	Channels map[string]BacklogBoundsConfig `yaml:"channels"`
}

// BacklogBoundsConfig is an age and a size (bytes of stored events).
type BacklogBoundsConfig struct {
	MaxAge  time.Duration `yaml:"max_age"`
	MaxSize int64         `yaml:"max_size"`
}

func (b BacklogBoundsConfig) bounds() forwarding.BacklogBounds {
	return forwarding.BacklogBounds{MaxAge: b.MaxAge, MaxSize: b.MaxSize}
}

func defaultForwarding() ForwardingConfig {
	return ForwardingConfig{Enabled: true, Reload: forwarding.DefaultReload, Poll: forwarding.DefaultPoll,
		Lanes: forwarding.DefaultLanes, RetryBase: forwarding.DefaultRetryBase, RetryMax: forwarding.DefaultRetryMax,
		DrainRate: forwarding.DefaultDrainRate, PushTimeout: httpchan.DefaultTimeout,
		Backlog: BacklogConfig{MaxAge: forwarding.DefaultBacklogAge, MaxSize: forwarding.DefaultBacklogSize,
			Check: forwarding.DefaultBacklogCheck}}
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
	case c.Backlog.MaxAge <= 0 || c.Backlog.MaxSize <= 0 || c.Backlog.Check <= 0:
		return errors.New("config: forwarding.backlog.max_age, max_size and check must be positive")
	}
	for name, b := range c.Backlog.Channels {
		switch name {
		case registry.ChannelHTTP, registry.ChannelKafka, registry.ChannelNATS:
		default:
			return fmt.Errorf("config: forwarding.backlog.channels: unknown channel %q (%s, %s or %s)", name,
				registry.ChannelHTTP, registry.ChannelKafka, registry.ChannelNATS)
		}
		if b.MaxAge < 0 || b.MaxSize < 0 {
			return fmt.Errorf("config: forwarding.backlog.channels.%s: max_age and max_size must not be negative (0 takes the default)", name)
		}
	}
	return nil
}

// newForwarding builds the delivery engine (package forwarding), nil when
// forwarding is off; runForwarding runs it. lease elects the node of each
// action (nil on a single node); delivered observes each delivery's delay.
func newForwarding(c ForwardingConfig, reg *registry.Registry, lease registry.Lease, log *slog.Logger,
	delivered func(actionID string, delay time.Duration)) *forwarding.Engine {
	if !c.Enabled {
		return nil
	}
	channelBacklog := make(map[string]forwarding.BacklogBounds, len(c.Backlog.Channels))
	for name, b := range c.Backlog.Channels {
		channelBacklog[name] = b.bounds()
	}
	return forwarding.New(forwarding.Options{Registry: reg, Lease: lease, Logger: log.With("component", "forwarding"),
		Reload: c.Reload, Poll: c.Poll, Lanes: c.Lanes, RetryBase: c.RetryBase, RetryMax: c.RetryMax, DrainRate: c.DrainRate,
		Backlog: forwarding.BacklogBounds{MaxAge: c.Backlog.MaxAge, MaxSize: c.Backlog.MaxSize}, ChannelBacklog: channelBacklog, BacklogCheck: c.Backlog.Check,
		Delivered: delivered,
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
