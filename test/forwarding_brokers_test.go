package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry/bus/natsbus/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// forwardAction makes a rule of subject with an action of channel.
func (g *Gate) forwardAction(resource, event, channel string, detail map[string]any) {
	g.t.Helper()
	rule := g.MustDo(201, "POST", g.P("/routing-rule/rules"), map[string]any{
		"subject": map[string]any{"resource": resource, "event": event}, "app_type": "GLOBAL", "active": true})
	g.MustDo(201, "POST", g.P("/routing-rule/actions"), map[string]any{"rule_id": rule["rule_id"], "channel": channel,
		"channel_detail": detail})
}

// An MQTT device's creation, status and uplinks reach a JetStream stream
// (Debian's nats-server -js) and a Kafka topic (franz-go's kfake), each
// device's in order, in IoTDA's envelope.
func TestForwardingToNATSAndKafka(t *testing.T) {
	js := natstest.StartJetStream(t)
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "iot-up"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	nc, err := nats.Connect(js.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	jsc, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := jsc.CreateStream(ctx, jetstream.StreamConfig{Name: "IOT", Subjects: []string{"iot.>"}})
	if err != nil {
		t.Fatal(err)
	}

	g := StartGate(t, GateOptions{LogLevel: "info", Extra: "forwarding:\n  poll: 10ms\n  reload: 100ms\n"})
	g.CreateProduct("fb", "MQTT")
	var addrs []map[string]any
	for _, a := range kc.ListenAddrs() {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		addrs = append(addrs, map[string]any{"ip": host, "port": p})
	}
	for _, s := range [][2]string{{"device", "create"}, {"device.status", "update"}, {"device.message", "report"}} {
		g.forwardAction(s[0], s[1], "NATS_FORWARDING", map[string]any{"nats_forwarding": map[string]any{
			"url": js.URL(), "subject": "iot." + s[0], "jetstream": true}})
		g.forwardAction(s[0], s[1], "DMS_KAFKA_FORWARDING", map[string]any{"dms_kafka_forwarding": map[string]any{
			"addresses": addrs, "topic": "iot-up"}})
	}
	time.Sleep(300 * time.Millisecond)
	const secret, n = "forwardBroker01", 50
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "fb",
		"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	c := g.huaweiConnect("fb_n1", secret)
	for i := range n {
		if tok := c.Publish("$oc/devices/fb_n1/sys/messages/up", 1, false, fmt.Sprintf(`{"i":%d}`, i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	// What each destination must hold: the creation, ONLINE, and the
	// uplinks in order. Each rule's action delivers on its own, so only
	// the order within one rule (one resource here) is defined.
	check := func(dest string, envs []pushEnvelope) {
		t.Helper()
		by := map[string][]pushEnvelope{}
		for _, e := range envs {
			by[e.Resource+"/"+e.Event] = append(by[e.Resource+"/"+e.Event], e)
		}
		if len(by["device/create"]) != 1 || len(by["device.status/update"]) != 1 || len(by["device.message/report"]) != n {
			t.Fatalf("%s holds %d creations, %d status changes, %d uplinks", dest, len(by["device/create"]),
				len(by["device.status/update"]), len(by["device.message/report"]))
		}
		var st struct{ Status string }
		if err := json.Unmarshal(by["device.status/update"][0].NotifyData.Body, &st); err != nil || st.Status != "ONLINE" {
			t.Errorf("%s: status %s", dest, by["device.status/update"][0].NotifyData.Body)
		}
		for i, e := range by["device.message/report"] {
			var body struct {
				Content struct{ I int } `json:"content"`
			}
			if err := json.Unmarshal(e.NotifyData.Body, &body); err != nil || body.Content.I != i ||
				e.NotifyData.Header.DeviceID != "fb_n1" || e.RequestID == "" {
				t.Fatalf("%s: uplink %d is %+v %s", dest, i, e, e.NotifyData.Body)
			}
		}
	}

	deadline := time.Now().Add(30 * time.Second)
	for {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs >= n+2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	var fromNATS []pushEnvelope
	for seq := uint64(1); ; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			break
		}
		var e pushEnvelope
		if err := json.Unmarshal(m.Data, &e); err != nil {
			t.Fatal(err)
		}
		if want := "iot." + e.Resource; m.Subject != want {
			t.Errorf("subject %s for a %s push", m.Subject, e.Resource)
		}
		if m.Header.Get("Nats-Msg-Id") != e.RequestID {
			t.Errorf("message id %q, request_id %q", m.Header.Get("Nats-Msg-Id"), e.RequestID)
		}
		fromNATS = append(fromNATS, e)
	}
	check("the JetStream stream", fromNATS)

	cl, err := kgo.NewClient(kgo.SeedBrokers(kc.ListenAddrs()...), kgo.ConsumeTopics("iot-up"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var fromKafka []pushEnvelope
	for len(fromKafka) < n+2 && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var e pushEnvelope
			if err := json.Unmarshal(r.Value, &e); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != "fb_n1" {
				t.Errorf("record key %q", r.Key)
			}
			fromKafka = append(fromKafka, e)
		})
	}
	check("the Kafka topic", fromKafka)
}
