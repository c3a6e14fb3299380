// Package kafkachan is the DMS_KAFKA_FORWARDING channel: each message is
// produced to the action's topic with acks=all (an idempotent producer),
// keyed by device id so a device's messages share a partition and keep
// their order; the produce acknowledgement is the delivery.
package kafkachan

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/iotgate/iotgate/forwarding"
	"github.com/iotgate/iotgate/registry"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// DefaultTimeout bounds one produce and its acknowledgement.
const DefaultTimeout = 15 * time.Second

// Options configure the channel; zero fields take defaults.
type Options struct {
	Timeout time.Duration
	// Linger is how long the producer waits to batch records of
	// concurrent lanes (zero: franz-go's default).
	Linger time.Duration
}

// Opener returns the forwarding.Opener of DMS_KAFKA_FORWARDING actions.
func Opener(o Options) forwarding.Opener {
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	return func(_ context.Context, a *registry.RuleAction) (forwarding.Channel, error) {
		k := a.Detail.Kafka
		if k == nil {
			return nil, fmt.Errorf("action %s: no dms_kafka_forwarding detail", a.ID)
		}
		cl, err := kgo.NewClient(clientOpts(o, k)...)
		if err != nil {
			return nil, fmt.Errorf("kafka client of action %s: %w", a.ID, err)
		}
		return &channel{cl: cl, topic: k.Topic, timeout: o.Timeout}, nil
	}
}

func clientOpts(o Options, k *registry.KafkaForwarding) []kgo.Opt {
	seeds := make([]string, 0, len(k.Addresses))
	for _, a := range k.Addresses {
		host := a.Domain
		if host == "" {
			host = a.IP
		}
		seeds = append(seeds, net.JoinHostPort(host, strconv.Itoa(a.Port)))
	}
	opts := []kgo.Opt{kgo.SeedBrokers(seeds...), kgo.DefaultProduceTopic(k.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.RecordDeliveryTimeout(max(o.Timeout, time.Second)), // franz-go takes no less
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)), kgo.ClientID("iotgate-forwarding")}
	if o.Linger > 0 {
		opts = append(opts, kgo.ProducerLinger(o.Linger))
	}
	// IoTDA: without a mechanism (or PAAS) the connection is plain;
	// with one, security_protocol defaults to SASL_SSL.
	switch k.Mechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: k.Username, Pass: k.Password}.AsMechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: k.Username, Pass: k.Password}.AsSha512Mechanism()))
	default:
		return opts
	}
	if k.SecurityProtocol != "SASL_PLAINTEXT" {
		opts = append(opts, kgo.DialTLSConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
	}
	return opts
}

var _ forwarding.BatchChannel = (*channel)(nil)

type channel struct {
	cl      *kgo.Client
	topic   string
	timeout time.Duration
}

func (c *channel) Deliver(ctx context.Context, m *forwarding.Message) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if err := c.cl.ProduceSync(ctx, record(m)).FirstErr(); err != nil {
		return fmt.Errorf("produce to %s: %w", c.topic, err)
	}
	return nil
}

// DeliverBatch produces msgs in order. The idempotent producer keeps a
// partition's records in the order given, and a record that fails fails
// every record buffered after it for its partition (kgo's Produce
// documentation), so what the topic holds of a device's batch is always
// a prefix of it: a redelivery from the start keeps the order.
func (c *channel) DeliverBatch(ctx context.Context, msgs []*forwarding.Message) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	recs := make([]*kgo.Record, len(msgs))
	for i, m := range msgs {
		recs[i] = record(m)
	}
	if err := c.cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("produce %d records to %s: %w", len(recs), c.topic, err)
	}
	return nil
}

func record(m *forwarding.Message) *kgo.Record {
	return &kgo.Record{Key: []byte(m.DeviceID), Value: m.Payload,
		Headers: []kgo.RecordHeader{{Key: "request_id", Value: []byte(m.RequestID)}}}
}

func (c *channel) Close() error {
	c.cl.Close()
	return nil
}
