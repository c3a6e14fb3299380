package activation

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func TestParseLogin(t *testing.T) {
	tests := []struct {
		cid, user string
		ok, timed bool
	}{
		{"meter1_0_0_2026120708", "meter1", true, false},
		{"meter1_0_1_2026120708", "meter1", true, true},
		{"meter_1_0_0_2026120708", "meter_1", true, false},
		{"meter1_0_2_2026120708", "meter1", false, false},
		{"meter1_0_0_20261207", "meter1", false, false},
		{"other_0_0_2026120708", "meter1", false, false},
		{"meter1_0_0_2026120708", "", false, false},
	}
	for _, tt := range tests {
		l, timed, err := parseLogin(tt.cid, tt.user, "pw")
		if (err == nil) != tt.ok || timed != tt.timed || tt.ok && (l.DeviceID != tt.user || l.Timestamp != "2026120708" || l.Password != "pw") {
			t.Errorf("parseLogin(%q, %q) = %+v, %v, %v", tt.cid, tt.user, l, timed, err)
		}
	}
}

func TestBootstrapMQTT(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fake := &fakeCentre{}
	b, err := NewBootstrapMQTT(BootstrapOptions{Centre: fake, Listen: addr})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer b.Shutdown(context.Background())

	dial := func(cid, user, pw string) (paho.Client, chan paho.Message, error) {
		msgs := make(chan paho.Message, 4)
		o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(cid).SetUsername(user).SetPassword(pw).
			SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
			SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m })
		c := paho.NewClient(o)
		tok := c.Connect()
		tok.WaitTimeout(10 * time.Second)
		return c, msgs, tok.Error()
	}
	good := strings.Repeat("a", 64)
	if _, _, err := dial("meter1_0_0_2026120708", "meter1", strings.Repeat("b", 64)); err == nil {
		t.Fatal("wrong password accepted")
	}
	if _, _, err := dial("meter1_0_1_2000010100", "meter1", good); err == nil {
		t.Fatal("stale sign_type 1 timestamp accepted")
	}
	c, msgs, err := dial("meter1_0_0_2026120708", "meter1", good)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(0)
	if tok := c.Subscribe("$oc/devices/other/sys/bootstrap/down", 1, nil); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		if st, ok := tok.(*paho.SubscribeToken); ok && st.Result()["$oc/devices/other/sys/bootstrap/down"] < 0x80 {
			t.Fatal("subscribed to another device's down topic")
		}
	}
	if tok := c.Subscribe("$oc/devices/meter1/sys/bootstrap/down", 1, nil); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	if tok := c.Publish("$oc/devices/meter1/sys/bootstrap/up", 1, false, ""); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	select {
	case m := <-msgs:
		if m.Topic() != "$oc/devices/meter1/sys/bootstrap/down" || string(m.Payload()) != `{"address":"mqtt.eu.example:8883"}` {
			t.Fatalf("answer on %s: %s", m.Topic(), m.Payload())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no bootstrap answer")
	}
	if fake.src.String() != "127.0.0.1" {
		t.Fatalf("centre saw source %v", fake.src)
	}
}
