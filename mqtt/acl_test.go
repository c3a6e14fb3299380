package mqtt

import (
	"context"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/iotgate/iotgate/registry"
)

// TestACLSubscriptions runs the subscription matrix over the wire: own
// downlink filters are granted, everything else gets SUBACK 0x80.
func TestMQTTACLSubscriptions(t *testing.T) {
	e := newEnv(t)
	e.secretDevice("dev_a", "secret-aaaa", "", false)
	e.secretDevice("dev_b", "secret-bbbb", "", false)
	a := e.mustConnect(dial{id: "dev_a", secret: "secret-aaaa"})

	granted := []string{
		"$oc/devices/dev_a/sys/commands/#",
		"$oc/devices/dev_a/sys/messages/down",
		"$oc/devices/dev_a/sys/properties/set/#",
		"$oc/devices/dev_a/user/custom",
		"$oc/devices/dev_a/#",
	}
	denied := []string{
		"$oc/devices/dev_b/sys/commands/#", // another device
		"$oc/devices/dev_b/user/custom",
		"$oc/devices/+/sys/#",
		"$oc/devices/#",
		"#",
		"+/+/+/sys/#",
		"$share/g/$oc/devices/dev_a/sys/#",
		"$SYS/#",
		"$oc/devices/dev_a/sys/messages/up", // an uplink
	}
	res := a.sub(t, append(granted, denied...)...)
	for _, f := range granted {
		if res[f] != 1 {
			t.Errorf("%s: SUBACK 0x%02x, want granted QoS 1", f, res[f])
		}
	}
	for _, f := range denied {
		if res[f] != 0x80 {
			t.Errorf("%s: SUBACK 0x%02x, want 0x80", f, res[f])
		}
	}
	if got := e.srv.Stats().DeniedSubscriptions; got != uint64(len(denied)) {
		t.Errorf("denied subscriptions counted %d, want %d", got, len(denied))
	}
	// QoS 2 is granted as QoS 1.
	tok := a.Subscribe("$oc/devices/dev_a/sys/events/down", 2, nil)
	tok.Wait()
	if q := tok.(interface{ Result() map[string]byte }).Result()["$oc/devices/dev_a/sys/events/down"]; q != 1 {
		t.Errorf("QoS 2 subscription granted 0x%02x, want 1", q)
	}
}

// TestACLPublishes: a device cannot write to another device's topics,
// nor to its own downlinks; such publishes are dropped and counted, and
// nothing a device publishes reaches any client.
func TestMQTTACLPublishes(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.secretDevice("dev_a", "secret-aaaa", "", false)
	e.secretDevice("dev_b", "secret-bbbb", "", false)
	a := e.mustConnect(dial{id: "dev_a", secret: "secret-aaaa"})
	b := e.mustConnect(dial{id: "dev_b", secret: "secret-bbbb"})
	b.mustSub(t, "$oc/devices/dev_b/#")
	a.mustSub(t, "$oc/devices/dev_a/#")

	forbidden := []string{
		"$oc/devices/dev_b/sys/commands/request_id=1", // forge a command to b
		"$oc/devices/dev_b/sys/messages/down",
		"$oc/devices/dev_b/user/custom",
		"$oc/devices/dev_b/sys/properties/report", // report for b
		"$oc/devices/dev_a/sys/messages/down",     // a's own downlink
		"elsewhere/topic",
	}
	for _, topic := range forbidden {
		a.pub(t, topic, 0, `{"services":[{"service_id":"s","properties":{"x":1}}]}`)
	}
	// a's own uplinks are accepted but consumed by the platform: a
	// does not get its own message back although subscribed to its #.
	a.pub(t, "$oc/devices/dev_a/sys/messages/up", 1, "up")
	a.pub(t, "$oc/devices/dev_a/user/custom", 1, "custom up")
	b.none(t, 300*time.Millisecond)
	a.none(t, 300*time.Millisecond)

	if got := e.srv.Stats().DeniedPublishes; got != uint64(len(forbidden)) {
		t.Errorf("denied publishes counted %d, want %d", got, len(forbidden))
	}
	// Every PUBLISH read counts as a message in, denied or not.
	if got := e.srv.Stats().MessagesReceived; got != uint64(len(forbidden)+2) {
		t.Errorf("messages received %d, want %d", got, len(forbidden)+2)
	}
	if sh, _ := e.reg.DeviceShadow(ctx, e.project, "dev_b"); len(sh.Services) != 0 {
		t.Errorf("dev_a's report reached dev_b's shadow: %+v", sh.Services)
	}
	if msgs, _ := e.reg.Messages(ctx, e.project, "dev_a", 10); len(msgs) != 2 {
		t.Errorf("dev_a has %d stored messages, want 2", len(msgs))
	}

	// MQTT 3.1.1 has no negative PUBACK: a refused QoS 1 publish closes
	// the connection.
	a.Publish("$oc/devices/dev_b/user/custom", 1, false, "x")
	a.waitLost(t)
}

// MQTT 5 clients get PUBACK 0x87 for a refused QoS 1 publish and stay
// connected.
func TestMQTT5ACLPublish(t *testing.T) {
	e := newEnv(t)
	e.secretDevice("dev_5", "secret-five", "", false)
	ts := hourStamp(time.Now())
	ca, c := connect5(t, e.srv.Addr(), "dev_5_0_0_"+ts, "dev_5", huaweiPassword("secret-five", ts), nil)
	if ca.ReasonCode != 0 {
		t.Fatalf("connect: 0x%02x", ca.ReasonCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Publish(ctx, &paho5.Publish{Topic: "$oc/devices/other/sys/messages/up", QoS: 1, Payload: []byte("x")})
	if resp == nil || resp.ReasonCode != 0x87 {
		t.Fatalf("PUBACK %+v (%v), want 0x87", resp, err)
	}
	resp, err = c.Publish(ctx, &paho5.Publish{Topic: "$oc/devices/dev_5/sys/messages/up", QoS: 1, Payload: []byte("ok")})
	if err != nil || resp.ReasonCode != 0 {
		t.Fatalf("own publish: %+v %v", resp, err)
	}
	msgs, _ := e.reg.Messages(ctx, e.project, "dev_5", 10)
	if len(msgs) != 1 || string(msgs[0].Payload) != "ok" {
		t.Fatalf("stored messages %+v", msgs)
	}
	if e.status("dev_5") != registry.StatusOnline {
		t.Fatal("refused publish disconnected the MQTT 5 client")
	}
}
