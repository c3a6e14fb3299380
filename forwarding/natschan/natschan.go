// Package natschan is the NATS_FORWARDING channel (iotgate's extension
// of IoTDA's channels): each message is published on the action's
// subject. With jetstream, a message is delivered when the stream that
// holds the subject acknowledges it, and its request_id is the
// JetStream message id, so the stream drops a redelivery within its
// duplicate window; without, it is delivered once the server has
// processed it (a flush), whoever subscribes.
package natschan

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/iotgate/iotgate/forwarding"
	"github.com/iotgate/iotgate/registry"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultTimeout bounds one publish and its acknowledgement.
const DefaultTimeout = 15 * time.Second

// Options configure the channel; zero fields take defaults.
type Options struct {
	Timeout time.Duration
}

// Opener returns the forwarding.Opener of NATS_FORWARDING actions.
func Opener(o Options) forwarding.Opener {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return func(_ context.Context, a *registry.RuleAction) (forwarding.Channel, error) {
		d := a.Detail.NATS
		if d == nil {
			return nil, fmt.Errorf("action %s: no nats_forwarding detail", a.ID)
		}
		// A server down at start is retried in the background: deliveries
		// fail (and are retried) until it is reached.
		nc, err := nats.Connect(d.URL, nats.Name("iotgate forwarding "+a.ID), nats.RetryOnFailedConnect(true),
			nats.MaxReconnects(-1), nats.ReconnectWait(time.Second), nats.Timeout(o.Timeout))
		if err != nil {
			return nil, fmt.Errorf("connect to %s for action %s: %w", d.URL, a.ID, err)
		}
		c := &channel{nc: nc, subject: d.Subject, timeout: o.Timeout}
		if d.JetStream {
			if c.js, err = jetstream.New(nc); err != nil {
				nc.Close()
				return nil, fmt.Errorf("jetstream for action %s: %w", a.ID, err)
			}
		}
		return c, nil
	}
}

var errNotConnected = errors.New("not connected to the NATS server")

type channel struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	subject string
	timeout time.Duration
}

func (c *channel) Deliver(ctx context.Context, m *forwarding.Message) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if c.js != nil {
		if _, err := c.js.Publish(ctx, c.subject, m.Payload, jetstream.WithMsgID(m.RequestID)); err != nil {
			return fmt.Errorf("jetstream publish to %s: %w", c.subject, err)
		}
		return nil
	}
	if !c.nc.IsConnected() {
		// Publish would buffer it for the reconnection: not delivered.
		return fmt.Errorf("publish to %s: %w", c.subject, errNotConnected)
	}
	if err := c.nc.Publish(c.subject, m.Payload); err != nil {
		return fmt.Errorf("publish to %s: %w", c.subject, err)
	}
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("flush publish to %s: %w", c.subject, err)
	}
	return nil
}

func (c *channel) Close() error {
	c.nc.Close()
	return nil
}
