package natschan

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/iotgate/iotgate/forwarding"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/bus/natsbus/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func open(t *testing.T, url, subject string, js bool) forwarding.Channel {
	t.Helper()
	ch, err := Opener(Options{Timeout: 2 * time.Second})(context.Background(), &registry.RuleAction{ID: "a1", ProjectID: "p",
		Channel: registry.ChannelNATS, Detail: registry.ChannelDetail{NATS: &registry.NATSForwarding{URL: url, Subject: subject, JetStream: js}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ch.Close() })
	return ch
}

func msg(i int) *forwarding.Message {
	return &forwarding.Message{RequestID: fmt.Sprintf("req-%d", i), DeviceID: "d", Payload: fmt.Appendf(nil, `{"i":%d}`, i)}
}

func TestJetStreamAckIsDelivery(t *testing.T) {
	srv := natstest.StartJetStream(t)
	ctx := context.Background()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ch := open(t, srv.URL(), "iot.up", true)
	// No stream holds the subject yet: nothing acknowledges, nothing is
	// delivered.
	if err := ch.Deliver(ctx, msg(0)); err == nil {
		t.Fatal("a publish no stream took counted as delivered")
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "IOT", Subjects: []string{"iot.>"}, Duplicates: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		if err := ch.Deliver(ctx, msg(i)); err != nil {
			t.Fatal(err)
		}
	}
	// A redelivery (same request_id) is dropped by the stream.
	if err := ch.Deliver(ctx, msg(2)); err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 3 {
		t.Fatalf("stream holds %d messages, want 3", info.State.Msgs)
	}
	for seq := uint64(1); seq <= 3; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"i":%d}`, seq); string(m.Data) != want || m.Header.Get("Nats-Msg-Id") != fmt.Sprintf("req-%d", seq) {
			t.Errorf("message %d: %s %v, want %s", seq, m.Data, m.Header, want)
		}
	}
}

func TestCorePublishAndServerDown(t *testing.T) {
	srv := natstest.Start(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("iot.core")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	ch := open(t, srv.URL(), "iot.core", false)
	if err := ch.Deliver(context.Background(), msg(1)); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(2 * time.Second)
	if err != nil || string(m.Data) != `{"i":1}` {
		t.Fatalf("subscriber got %v %v", m, err)
	}
	srv.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for ch.Deliver(context.Background(), msg(2)) == nil {
		if time.Now().After(deadline) {
			t.Fatal("deliveries succeed with the server down")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
