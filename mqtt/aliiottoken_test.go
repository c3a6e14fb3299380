package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/regions"
)

// iotTokenDial is the CONNECT iotkit 3.0.1 sends after its pre-auth.
func iotTokenDial(iotID, token string) dial {
	return dial{clientID: "a1TESTPK001.dev1|timestamp=2524608000000,_v=sdk-c-3.0.1,securemode=-1,signmethod=hmacsha256,lan=C,gw=0,ext=0|",
		username: ptr(iotID), password: ptr(token)}
}

func TestMQTTAliIotToken(t *testing.T) {
	toks := regions.NewTokens([]byte("region master key"), 0)
	e := newEnvWith(t, slog.LevelDebug, func(o *Options) { o.IotTokens = toks })
	e.aliProduct("a1TESTPK001", "", false, false, "")
	d := e.aliDevice("a1TESTPK001", "dev1", "devSecret0123456789", false)
	other := e.aliDevice("a1TESTPK001", "dev2", "devSecret2", false)
	now := time.Now()
	tok := toks.Issue(d, now)

	c := e.mustConnect(iotTokenDial(d.DeviceID, tok))
	waitConnected(t, e.srv, 1)

	// The region tells it to bootstrap again.
	if err := e.srv.NotifyBootstrap(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	m := c.next(t, 5*time.Second)
	var body struct {
		ID      string         `json:"id"`
		Version string         `json:"version"`
		Method  string         `json:"method"`
		Params  map[string]int `json:"params"`
	}
	if err := json.Unmarshal(m.Payload(), &body); err != nil {
		t.Fatal(err)
	}
	if m.Topic() != "/sys/a1TESTPK001/dev1/thing/bootstrap/notify" || body.Method != "thing.bootstrap.notify" ||
		body.Version != "1.0" || body.ID == "" || len(body.Params) != 1 || body.Params["cmd"] != 0 {
		t.Fatalf("notify on %s: %s", m.Topic(), m.Payload())
	}
	// Its reply is allowed.
	if tk := c.Publish("/sys/a1TESTPK001/dev1/thing/bootstrap/notify_reply", 1, false, `{"id":"`+body.ID+`","code":200,"data":{}}`); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("notify_reply: %v", tk.Error())
	}
	// Or it is sent its new endpoint directly, in the shape iotkit's
	// redirect-region handler reads.
	if err := e.srv.PushBootstrapConfig(context.Background(), d, d.DeviceID, "new-token", "eu.example", 8883); err != nil {
		t.Fatal(err)
	}
	m = c.next(t, 5*time.Second)
	var push struct {
		ID, Version, Method string
		Params              struct {
			IotID    string `json:"iotId"`
			Endpoint struct {
				MQTT struct {
					Host  string `json:"host"`
					Port  int    `json:"port"`
					Token string `json:"token"`
				} `json:"mqtt"`
			} `json:"endpoint"`
		}
	}
	if err := json.Unmarshal(m.Payload(), &push); err != nil {
		t.Fatal(err)
	}
	if ep := push.Params.Endpoint.MQTT; m.Topic() != "/sys/a1TESTPK001/dev1/thing/bootstrap/config/push" ||
		push.Method != "thing.bootstrap.config.push" || push.Version != "1.0" || push.ID == "" || push.ID == body.ID ||
		push.Params.IotID != d.DeviceID || ep.Host != "eu.example" || ep.Port != 8883 || ep.Token != "new-token" {
		t.Fatalf("config push on %s: %s", m.Topic(), m.Payload())
	}
	if tk := c.Publish("/sys/a1TESTPK001/dev1/thing/bootstrap/config/push_reply", 1, false, `{"id":"`+push.ID+`","code":200,"data":{}}`); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatalf("push_reply: %v", tk.Error())
	}
	c.Disconnect(0)
	if err := e.srv.PushBootstrapConfig(context.Background(), other, other.DeviceID, "t", "h", 1); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("push to an offline device: %v", err)
	}
	if err := e.srv.NotifyBootstrap(context.Background(), other); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("notify to an offline device: %v", err)
	}

	with := func(f func(*dial)) dial { dl := iotTokenDial(d.DeviceID, tok); f(&dl); return dl }
	refused := []struct {
		name string
		d    dial
		code byte
	}{
		{"another device's token", iotTokenDial(other.DeviceID, tok), 0x03},
		{"expired token", iotTokenDial(d.DeviceID, toks.Issue(d, now.Add(-regions.DefaultTokenTTL))), 0x03},
		{"another region's token", iotTokenDial(d.DeviceID, regions.NewTokens([]byte("other"), 0).Issue(d, now)), 0x03},
		{"unknown iotId", iotTokenDial("nobody", tok), 0x03},
		{"no token", with(func(dl *dial) { dl.password = ptr("") }), 0x03},
		{"keepalive 10 s", with(func(dl *dial) { dl.keepalive = 10 * time.Second }), 0x02},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) { e.refused(tt.d, tt.code) })
	}
}

// A node without an activation centre's key refuses securemode -1.
func TestMQTTAliIotTokenDisabled(t *testing.T) {
	e := newEnv(t)
	e.aliProduct("a1TESTPK001", "", false, false, "")
	d := e.aliDevice("a1TESTPK001", "dev1", "devSecret0123456789", false)
	e.refused(iotTokenDial(d.DeviceID, regions.NewTokens([]byte("k"), 0).Issue(d, time.Now())), 0x02)
}
