package forwarding

import (
	"context"

	"github.com/iotgate/iotgate/registry"
)

// Message is one push: an event as IoTDA's push envelope.
type Message struct {
	// RequestID is the envelope's request_id: stable across redeliveries
	// (the event's id), so receivers can drop duplicates.
	RequestID string
	ProjectID string
	DeviceID  string
	// Seq is the event's per-device sequence number.
	Seq uint64
	// Payload is the envelope as JSON (or what the rule's select keeps
	// of it).
	Payload []byte

	// pos and at are the event's stream position and time (Unix
	// nanoseconds), for the backlog bounds.
	pos uint64
	at  int64
}

// Channel delivers messages to one destination. Deliver returns nil only
// once the destination has acknowledged m; the engine calls it from
// several goroutines at once (never for two messages of one device).
type Channel interface {
	Deliver(ctx context.Context, m *Message) error
	Close() error
}

// Opener makes the channel of an action; the engine keeps one Opener per
// channel name (registry.ChannelHTTP...).
type Opener func(ctx context.Context, a *registry.RuleAction) (Channel, error)

// BatchChannel is a Channel that can take several messages at once, in
// order (a lane's: each device's in order). DeliverBatch returns nil only once the
// destination has acknowledged all of them; on an error the engine
// delivers the batch again, so a destination must keep the order of
// what it acknowledged (a Kafka partition with an idempotent producer
// does). While draining an outage, batches are cut to the drain rate.
type BatchChannel interface {
	Channel
	DeliverBatch(ctx context.Context, msgs []*Message) error
}
