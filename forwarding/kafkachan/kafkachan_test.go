package kafkachan

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/iotgate/iotgate/forwarding"
	"github.com/iotgate/iotgate/registry"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

func addresses(t *testing.T, addrs []string) []registry.NetAddress {
	t.Helper()
	var out []registry.NetAddress
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			t.Fatal(err)
		}
		p, _ := strconv.Atoi(port)
		out = append(out, registry.NetAddress{IP: host, Port: p})
	}
	return out
}

func open(t *testing.T, k registry.KafkaForwarding, timeout time.Duration) forwarding.Channel {
	t.Helper()
	ch, err := Opener(Options{Timeout: timeout})(context.Background(), &registry.RuleAction{ID: "a1", ProjectID: "p",
		Channel: registry.ChannelKafka, Detail: registry.ChannelDetail{Kafka: &k}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

// consume reads n records of topic.
func consume(t *testing.T, addrs []string, topic string, n int, o ...kgo.Opt) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addrs...), kgo.ConsumeTopics(topic)}, o...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, err)
		}
		fs.EachRecord(func(r *kgo.Record) { out = append(out, r) })
	}
	return out
}

func TestProduceInDeviceOrder(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "iot"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ch := open(t, registry.KafkaForwarding{Addresses: addresses(t, c.ListenAddrs()), Topic: "iot"}, 5*time.Second)
	for i := range 20 {
		dev := fmt.Sprintf("d%d", i%3)
		if err := ch.Deliver(context.Background(), &forwarding.Message{RequestID: fmt.Sprintf("r%d", i), DeviceID: dev,
			Payload: fmt.Appendf(nil, `{"i":%d}`, i)}); err != nil {
			t.Fatal(err)
		}
	}
	// A batch (a lane's messages) keeps its order too.
	var batch []*forwarding.Message
	for i := 20; i < 30; i++ {
		batch = append(batch, &forwarding.Message{RequestID: fmt.Sprintf("r%d", i), DeviceID: fmt.Sprintf("d%d", i%3),
			Payload: fmt.Appendf(nil, `{"i":%d}`, i)})
	}
	if err := ch.(forwarding.BatchChannel).DeliverBatch(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	recs := consume(t, c.ListenAddrs(), "iot", 30)
	last := map[string]int{}
	parts := map[string]int32{}
	for _, r := range recs {
		var i int
		if _, err := fmt.Sscanf(string(r.Value), `{"i":%d}`, &i); err != nil {
			t.Fatal(err)
		}
		dev := string(r.Key)
		if p, ok := parts[dev]; ok && p != r.Partition {
			t.Errorf("%s's records in partitions %d and %d", dev, p, r.Partition)
		}
		parts[dev] = r.Partition
		if prev, ok := last[dev]; ok && i <= prev {
			t.Errorf("%s: %d after %d", dev, i, prev)
		}
		last[dev] = i
		if len(r.Headers) != 1 || r.Headers[0].Key != "request_id" || string(r.Headers[0].Value) != fmt.Sprintf("r%d", i) {
			t.Errorf("headers %v", r.Headers)
		}
	}
}

func TestSASLAndUnreachable(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "iot"), kfake.EnableSASL(),
		kfake.Superuser("SCRAM-SHA-512", "iot", "s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addrs := addresses(t, c.ListenAddrs())
	m := &forwarding.Message{RequestID: "r", DeviceID: "d", Payload: []byte(`{}`)}
	good := open(t, registry.KafkaForwarding{Addresses: addrs, Topic: "iot", Mechanism: "SCRAM-SHA-512", Username: "iot",
		Password: "s3cret", SecurityProtocol: "SASL_PLAINTEXT"}, 5*time.Second)
	if err := good.Deliver(context.Background(), m); err != nil {
		t.Fatalf("with SCRAM-SHA-512: %v", err)
	}
	bad := open(t, registry.KafkaForwarding{Addresses: addrs, Topic: "iot", Mechanism: "SCRAM-SHA-512", Username: "iot",
		Password: "wrong", SecurityProtocol: "SASL_PLAINTEXT"}, time.Second)
	if err := bad.Deliver(context.Background(), m); err == nil {
		t.Error("a wrong password produced")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone := addresses(t, []string{l.Addr().String()})
	l.Close()
	down := open(t, registry.KafkaForwarding{Addresses: gone, Topic: "iot"}, time.Second)
	start := time.Now()
	if err := down.Deliver(context.Background(), m); err == nil {
		t.Error("produced to no broker")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("an unreachable broker took %v to fail", d)
	}
}
