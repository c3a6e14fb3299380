package mqtt

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	paho5 "github.com/eclipse/paho.golang/paho"

	"github.com/iotgate/iotgate/registry"
)

// The test's password helper must agree with IoTDA's published vector,
// or every test below would prove only that the server agrees with it.
func TestMQTTPasswordVector(t *testing.T) {
	const want = "c75150e6cb841417396819e4d2ee4358a416344a03a083e3a8567074ddec820a"
	if got := huaweiPassword("12345678", "2025041401"); got != want {
		t.Fatalf("password = %s, want %s", got, want)
	}
}

func TestMQTTSecretAuthentication(t *testing.T) {
	e := newEnv(t)
	e.secretDevice("meter_1", "secret-primary", "secret-second", false)
	e.secretDevice("secure_1", "secret-secure", "", true)
	e.secretDevice("cold_1", "secret-frozen", "", false)
	if err := e.reg.SetFrozen(context.Background(), e.project, "cold_1", true); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ts := hourStamp(now)
	stale := hourStamp(now.Add(-3 * time.Hour))

	ok := []struct {
		name string
		d    dial
	}{
		{"primary secret", dial{id: "meter_1", secret: "secret-primary"}},
		{"secondary secret", dial{id: "meter_1", secret: "secret-second"}},
		{"uppercase password", dial{id: "meter_1", password: ptr(strings.ToUpper(huaweiPassword("secret-primary", ts)))}},
		{"sign_type 1, current hour", dial{id: "meter_1", clientID: "meter_1_0_1_" + ts, secret: "secret-primary"}},
		// sign_type 0 takes the timestamp verbatim as the key, even a non-date.
		{"sign_type 0, old non-date timestamp", dial{id: "meter_1", clientID: "meter_1_0_0_2024010124",
			password: ptr(huaweiPassword("secret-primary", "2024010124"))}},
		{"keepalive 30 s", dial{id: "meter_1", secret: "secret-primary", keepalive: 30 * time.Second}},
		{"keepalive 1200 s", dial{id: "meter_1", secret: "secret-primary", keepalive: 1200 * time.Second}},
		{"secure_access over MQTTS", dial{id: "secure_1", secret: "secret-secure", tls: true}},
		{"secret device over MQTTS", dial{id: "meter_1", secret: "secret-primary", tls: true}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			c := e.mustConnect(tt.d)
			c.Disconnect(0)
		})
	}

	refused := []struct {
		name string
		d    dial
		code byte
	}{
		{"wrong password", dial{id: "meter_1", secret: "not-the-secret"}, 0x04},
		{"no password", dial{id: "meter_1"}, 0x04},
		{"password not hex", dial{id: "meter_1", password: ptr(strings.Repeat("zz", 32))}, 0x04},
		{"password of another hour", dial{id: "meter_1", password: ptr(huaweiPassword("secret-primary", stale))}, 0x04},
		{"unknown device", dial{id: "ghost_1", secret: "secret-primary"}, 0x04},
		{"sign_type 1, stale timestamp", dial{id: "meter_1", clientID: "meter_1_0_1_" + stale,
			password: ptr(huaweiPassword("secret-primary", stale))}, 0x04},
		{"secure_access over plain MQTT", dial{id: "secure_1", secret: "secret-secure"}, 0x04},
		{"frozen device", dial{id: "cold_1", secret: "secret-frozen"}, 0x05},
		{"frozen device, wrong password", dial{id: "cold_1", secret: "wrong"}, 0x04},
		{"username differs from ClientId", dial{id: "meter_1", secret: "secret-primary", username: ptr("secure_1")}, 0x02},
		{"malformed ClientId", dial{id: "meter_1", secret: "secret-primary", clientID: "meter_1"}, 0x02},
		{"identity type 2", dial{id: "meter_1", secret: "secret-primary", clientID: "meter_1_2_0_" + ts}, 0x02},
		{"sign_type 1, not a date", dial{id: "meter_1", clientID: "meter_1_0_1_2024010124",
			password: ptr(huaweiPassword("secret-primary", "2024010124"))}, 0x02},
		{"keepalive 29 s", dial{id: "meter_1", secret: "secret-primary", keepalive: 29 * time.Second}, 0x02},
		{"keepalive 1201 s", dial{id: "meter_1", secret: "secret-primary", keepalive: 1201 * time.Second}, 0x02},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) { e.refused(tt.d, tt.code) })
	}

	t.Run("outcomes are counted by result and reason", func(t *testing.T) {
		st := e.srv.Stats()
		for result, want := range map[string]uint64{"accepted": uint64(len(ok)), "bad_credentials": 8,
			"not_authorized": 1, "identifier_rejected": 6, "server_unavailable": 0, "packet_too_large": 0, "banned": 0} {
			if got, present := st.Connects[result]; got != want || !present {
				t.Errorf("connects %s: %d (present %t), want %d", result, got, present, want)
			}
		}
		// secure_access over plain MQTT and a frozen device are refusals,
		// not failed authentications.
		for reason, want := range map[string]uint64{"bad_secret": 5, "unknown_device": 1, "stale_timestamp": 1, "bad_certificate": 0} {
			if got, present := st.AuthFailures[reason]; got != want || !present {
				t.Errorf("auth failures %s: %d (present %t), want %d", reason, got, present, want)
			}
		}
	})

	t.Run("refusals are logged with their reason, secrets never", func(t *testing.T) {
		logs := e.logs.String()
		for _, want := range []string{"wrong password", "unknown device", "device is frozen", "secure_access", "keepalive 29 s"} {
			if !strings.Contains(logs, want) {
				t.Errorf("log lacks %q", want)
			}
		}
		for _, secret := range []string{"secret-primary", huaweiPassword("secret-primary", ts), huaweiPassword("not-the-secret", ts)} {
			if strings.Contains(logs, secret) {
				t.Errorf("log contains a secret or password %q", secret)
			}
		}
	})
}

// MQTT 5 clients get the MQTT 5 reason codes.
func TestMQTT5SecretAuthentication(t *testing.T) {
	e := newEnv(t)
	e.secretDevice("meter_5", "secret-five", "", false)
	e.secretDevice("cold_5", "secret-cold", "", false)
	if err := e.reg.SetFrozen(context.Background(), e.project, "cold_5", true); err != nil {
		t.Fatal(err)
	}
	ts := hourStamp(time.Now())
	tests := []struct {
		name, clientID, user, secret string
		want                         byte
	}{
		{"accepted", "meter_5_0_0_" + ts, "meter_5", "secret-five", 0x00},
		{"malformed ClientId", "meter_5", "meter_5", "secret-five", 0x85},
		{"wrong password", "meter_5_0_0_" + ts, "meter_5", "wrong-secret", 0x86},
		{"frozen", "cold_5_0_0_" + ts, "cold_5", "secret-cold", 0x87},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, _ := connect5(t, e.srv.Addr(), tt.clientID, tt.user, huaweiPassword(tt.secret, ts), nil)
			if ca == nil || ca.ReasonCode != tt.want {
				t.Fatalf("CONNACK %+v, want reason 0x%02x", ca, tt.want)
			}
		})
	}
}

// connect5 connects an MQTT 5 client; its CONNACK is returned even when
// the connection was refused.
func connect5(t *testing.T, addr, clientID, user, password string, will *paho5.WillMessage) (*paho5.Connack, *paho5.Client) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := paho5.NewClient(paho5.ClientConfig{Conn: conn})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ca, err := c.Connect(ctx, &paho5.Connect{ClientID: clientID, Username: user, UsernameFlag: true,
		Password: []byte(password), PasswordFlag: true, KeepAlive: 120, CleanStart: true, WillMessage: will})
	if err != nil && ca == nil {
		t.Fatalf("connect: %v", err)
	}
	if err == nil {
		t.Cleanup(func() { _ = c.Disconnect(&paho5.Disconnect{}) })
	}
	return ca, c
}

// A new CONNECT of a device, whatever its ClientId timestamp, takes over
// the old connection; the device stays ONLINE throughout and goes
// OFFLINE only when its current connection ends.
func TestMQTTTakeover(t *testing.T) {
	e := newEnv(t)
	e.secretDevice("meter_t", "secret-take", "", false)
	first := e.mustConnect(dial{id: "meter_t", secret: "secret-take"})
	e.waitStatus("meter_t", registry.StatusOnline)

	second := e.mustConnect(dial{id: "meter_t", clientID: "meter_t_0_0_2024010124",
		password: ptr(huaweiPassword("secret-take", "2024010124"))})
	first.waitLost(t)
	if st := e.status("meter_t"); st != registry.StatusOnline {
		t.Fatalf("after takeover: %s, want ONLINE", st)
	}
	waitConnected(t, e.srv, 1)
	e.ready("meter_t")
	// The new connection is the device's: it receives its downlinks.
	d, _ := e.reg.Device(context.Background(), "meter_t")
	if err := e.srv.SendMessage(context.Background(), d, registry.DownMessage{Payload: []byte("hi")}); err != nil {
		t.Fatal(err)
	}
	if m := second.next(t, 5*time.Second); string(m.Payload()) != "hi" {
		t.Fatalf("got %q", m.Payload())
	}
	second.Disconnect(0)
	e.waitStatus("meter_t", registry.StatusOffline)
	waitConnected(t, e.srv, 0)
}

// waitConnected waits until the server counts n connected clients (a
// closed connection's count goes once its goroutine has ended).
func waitConnected(t *testing.T, s *Server, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.Connected() != n {
		if time.Now().After(deadline) {
			t.Fatalf("Connected() = %d, want %d", s.Connected(), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
