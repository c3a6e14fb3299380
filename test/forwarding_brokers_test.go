package test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
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

// Every subject reaches a JetStream stream (Debian's nats-server -js)
// and a Kafka topic (franz-go's kfake) in IoTDA's envelope: an MQTT
// device's creation, activation, status, uplinks (each device's in
// order), property report and downlink message status; an NB
// device's creation, rename, command status and deletion; an LwM2M
// device's uplink, and a sub-device's through its gateway.
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
	g.CreateProduct("fbnb", "CoAP")
	var addrs []map[string]any
	for _, a := range kc.ListenAddrs() {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		addrs = append(addrs, map[string]any{"ip": host, "port": p})
	}
	subjects := [][2]string{{"device", "create"}, {"device", "update"}, {"device", "delete"}, {"device.status", "update"},
		{"device.message", "report"}, {"device.property", "report"}, {"device.command.status", "update"},
		{"device.message.status", "update"}}
	for _, s := range subjects {
		g.forwardAction(s[0], s[1], "NATS_FORWARDING", map[string]any{"nats_forwarding": map[string]any{
			"url": js.URL(), "subject": "iot." + s[0], "jetstream": true}})
		g.forwardAction(s[0], s[1], "DMS_KAFKA_FORWARDING", map[string]any{"dms_kafka_forwarding": map[string]any{
			"addresses": addrs, "topic": "iot-up"}})
	}
	time.Sleep(300 * time.Millisecond)
	const secret, n = "forwardBroker01", 50
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "n1", "product_id": "fb",
		"auth_info": map[string]any{"secret": secret, "secure_access": false}})
	g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "imei1", "product_id": "fbnb",
		"auth_info": map[string]any{"secret": "00112233445566778899aabbccddeeff"}})
	c := g.huaweiConnect("fb_n1", secret)
	for i := range n {
		if tok := c.Publish("$oc/devices/fb_n1/sys/messages/up", 1, false, fmt.Sprintf(`{"i":%d}`, i)); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	if tok := c.Publish("$oc/devices/fb_n1/sys/properties/report", 1, false,
		`{"services":[{"service_id":"Basic","properties":{"temp":21}}]}`); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	g.MustDo(201, "POST", g.P("/devices/fb_n1/messages"), map[string]any{"message_id": "down-1", "message": "hello"})
	g.MustDo(200, "PUT", g.P("/devices/fbnb_imei1"), map[string]any{"device_name": "renamed"})
	g.MustDo(201, "POST", g.P("/devices/fbnb_imei1/async-commands"), map[string]any{"service_id": "Basic",
		"command_name": "read", "paras": map[string]any{"a": 1}})
	g.MustDo(204, "DELETE", g.P("/devices/fbnb_imei1"), nil)

	// An LwM2M device's /19/0/0 notification, and a sub-device's uplink
	// through its Alibaba gateway.
	lw := g.MustDo(201, "POST", g.P("/devices"), map[string]any{"node_id": "fb-meter", "product_id": "fbnb",
		"auth_info": map[string]any{"secret": pskSecret, "secure_access": false}})["device_id"].(string)
	lc := goClient(t, g, lwm2mclient.Config{Endpoint: "fb-meter", Lifetime: 60})
	if err := lc.Register(ctx); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); !lc.Observed("/19/0/0"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the platform did not observe /19/0/0")
		}
	}
	if err := lc.SendData([]byte("nb-up")); err != nil {
		t.Fatal(err)
	}
	gw, gwID, subID := g.onlineSubDevice(t, "fbgwpk", "fbsubpk")
	gw.publish(t, "/fbsubpk/s1/user/data", "through the gateway")
	// What each destination must hold, at least: every subject, with
	// the uplinks of fb_n1 in order. Each rule's action delivers on its
	// own, so only the order within one rule is defined.
	want := map[string]int{"device/create": 2, "device/update": 2, "device/delete": 1, "device.status/update": 1,
		"device.message/report": n + 2, "device.property/report": 1, "device.command.status/update": 1,
		"device.message.status/update": 1}
	complete := func(envs []pushEnvelope) bool {
		by := map[string]int{}
		for _, e := range envs {
			by[e.Resource+"/"+e.Event]++
		}
		for k, w := range want {
			if by[k] < w {
				return false
			}
		}
		return true
	}
	check := func(dest string, envs []pushEnvelope) {
		t.Helper()
		by := map[string][]pushEnvelope{}
		for _, e := range envs {
			by[e.Resource+"/"+e.Event] = append(by[e.Resource+"/"+e.Event], e)
		}
		for k, w := range want {
			if len(by[k]) < w {
				t.Fatalf("%s holds %d of %s, want at least %d (all: %d pushes)", dest, len(by[k]), k, w, len(envs))
			}
		}
		var st struct{ Status string }
		if err := json.Unmarshal(by["device.status/update"][0].NotifyData.Body, &st); err != nil || st.Status != "ONLINE" {
			t.Errorf("%s: status %s", dest, by["device.status/update"][0].NotifyData.Body)
		}
		if h := by["device/delete"][0].NotifyData.Header; h.DeviceID != "fbnb_imei1" || h.ProductID != "fbnb" {
			t.Errorf("%s: deletion header %+v", dest, h)
		}
		var cmd, msg map[string]any
		if json.Unmarshal(by["device.command.status/update"][0].NotifyData.Body, &cmd) != nil || cmd["command_id"] == nil {
			t.Errorf("%s: command status %s", dest, by["device.command.status/update"][0].NotifyData.Body)
		}
		if json.Unmarshal(by["device.message.status/update"][0].NotifyData.Body, &msg) != nil || msg["message_id"] != "down-1" {
			t.Errorf("%s: message status %s", dest, by["device.message.status/update"][0].NotifyData.Body)
		}
		i := 0
		var nb, sub bool
		for _, e := range by["device.message/report"] {
			var body struct {
				Content json.RawMessage `json:"content"`
				Topic   string          `json:"topic"`
			}
			if err := json.Unmarshal(e.NotifyData.Body, &body); err != nil || e.RequestID == "" {
				t.Fatalf("%s: uplink %+v %s: %v", dest, e, e.NotifyData.Body, err)
			}
			switch h := e.NotifyData.Header; h.DeviceID {
			case "fb_n1":
				var c struct{ I int }
				if json.Unmarshal(body.Content, &c) != nil || c.I != i || h.ProductID != "fb" {
					t.Fatalf("%s: uplink %d of fb_n1 is %s", dest, i, e.NotifyData.Body)
				}
				i++
			case lw:
				nb = body.Topic == "/19/0/0" && h.NodeID == "fb-meter"
			case subID:
				sub = h.GatewayID == gwID && body.Topic == "/fbsubpk/s1/user/data"
			}
		}
		if i != n || !nb || !sub {
			t.Fatalf("%s: %d of fb_n1's %d uplinks, the LwM2M uplink %v, the sub-device's %v", dest, i, n, nb, sub)
		}
	}

	var fromNATS []pushEnvelope
	for seq := uint64(1); !complete(fromNATS) && ctx.Err() == nil; {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil { // not there yet
			time.Sleep(50 * time.Millisecond)
			continue
		}
		seq++
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
	for !complete(fromKafka) && ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(r *kgo.Record) {
			var e pushEnvelope
			if err := json.Unmarshal(r.Value, &e); err != nil {
				t.Fatal(err)
			}
			if string(r.Key) != e.NotifyData.Header.DeviceID {
				t.Errorf("record key %q for a push about %s", r.Key, e.NotifyData.Header.DeviceID)
			}
			fromKafka = append(fromKafka, e)
		})
	}
	check("the Kafka topic", fromKafka)
}
