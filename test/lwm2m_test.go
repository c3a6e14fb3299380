package test

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

func coapCode(err error) codes.Code {
	var ce *lwm2mclient.CodeError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// TestLwM2MRegisterReadAndUplink: a NoSec client registers (ONLINE), a
// READ issued through the REST API returns its value, its /19/0/0
// notifications become device messages, and it goes OFFLINE when it
// de-registers.
func TestLwM2MRegisterReadAndUplink(t *testing.T) {
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "meter-1", false, nil)
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "meter-1", Lifetime: 60})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	waitDeviceStatus(t, g, dev, "ONLINE")

	// An awake device takes an "immediately" command at once: SENT, or
	// still PENDING when the delivery pass the Register itself started is
	// running at that moment (it picks the command up when it loops).
	created := g.MustDo(http.StatusCreated, "POST", g.P("/devices/"+dev+"/async-commands"), map[string]any{
		"service_id": "LwM2M", "command_name": "READ", "paras": map[string]any{"path": "/3/0/0"}, "send_strategy": "immediately"})
	if (created["status"] != "SENT" && created["status"] != "PENDING") || created["expire_time"] != float64(86400) || created["send_strategy"] != "immediately" {
		t.Fatalf("created %v", created)
	}
	id := created["command_id"].(string)
	done := waitCommand(t, g, dev, id, "SUCCESSFUL")
	res := done["result"].(map[string]any)
	vals := res["values"].([]any)
	if res["code"] != "2.05" || len(vals) != 1 || vals[0].(map[string]any)["value"] != "iotgate" {
		t.Fatalf("READ result %v", res)
	}
	if done["sent_time"] == "" || done["response_time"] == "" {
		t.Fatalf("times missing: %v", done)
	}

	deadline := time.Now().Add(5 * time.Second)
	for !c.Observed("/19/0/0") {
		if time.Now().After(deadline) {
			t.Fatal("the platform did not observe /19/0/0")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.SendData([]byte{0xde, 0xad, 0xbe, 0xef}); err != nil {
		t.Fatal(err)
	}
	want := base64.StdEncoding.EncodeToString([]byte{0xde, 0xad, 0xbe, 0xef})
	for deadline = time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+dev+"/device-messages"), nil)
		msgs := out["messages"].([]any)
		if len(msgs) > 0 && msgs[0].(map[string]any)["payload"] == want && msgs[0].(map[string]any)["topic"] == "/19/0/0" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("uplink not stored: %v", out)
		}
	}

	if err := c.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	waitDeviceStatus(t, g, dev, "OFFLINE")
}

// TestLwM2MRefusals: every refusal of the issue, each leaving the device
// as it was (INACTIVE, never activated).
func TestLwM2MRefusals(t *testing.T) {
	g := startLwM2MGate(t)
	plain := lwm2mDevice(t, g, "plain-1", false, nil)
	secure := lwm2mDevice(t, g, "secure-1", true, nil)
	other := lwm2mDevice(t, g, "secure-2", true, nil)
	frozen := lwm2mDevice(t, g, "frozen-1", false, nil)
	g.MustDo(http.StatusNoContent, "POST", g.P("/devices/"+frozen+"/freeze"), nil)
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		cfg  lwm2mclient.Config
	}{
		{"unknown endpoint", lwm2mclient.Config{Endpoint: "nobody"}},
		{"secure-only over NoSec", lwm2mclient.Config{Endpoint: "secure-1"}},
		{"frozen", lwm2mclient.Config{Endpoint: "frozen-1"}},
		{"frozen over DTLS", lwm2mclient.Config{Endpoint: "frozen-1", PSKIdentity: "frozen-1", PSK: []byte(pskText)}},
		{"ep differs from the PSK identity", lwm2mclient.Config{Endpoint: "secure-1", PSKIdentity: "secure-2", PSK: []byte(pskText)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := goClient(t, g, tc.cfg).Register(ctx)
			if coapCode(err) != codes.Forbidden {
				t.Fatalf("register: %v, want 4.03", err)
			}
		})
	}
	t.Run("wrong PSK", func(t *testing.T) {
		_, err := lwm2mclient.Dial(ctx, lwm2mclient.Config{Server: g.DTLS, Endpoint: "secure-1", PSKIdentity: "secure-1",
			PSK: []byte("not-the-key-0001"), RequestTimeout: 2 * time.Second})
		if err == nil {
			t.Fatal("handshake with a wrong key succeeded")
		}
	})
	t.Run("bad input", func(t *testing.T) {
		for _, cfg := range []lwm2mclient.Config{
			{Endpoint: "plain-1", Objects: "<not a link"},
			{Endpoint: "plain-1", Lifetime: 999999999},
		} {
			if err := goClient(t, g, cfg).Register(ctx); coapCode(err) != codes.BadRequest {
				t.Errorf("register %+v: %v, want 4.00", cfg, err)
			}
		}
	})
	for _, id := range []string{plain, secure, other} {
		d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id), nil)
		if d["status"] != "INACTIVE" || d["active_time"] != nil {
			t.Errorf("%s changed: %v", id, d)
		}
	}
	if st := deviceStatus(t, g, frozen); st != "FROZEN" {
		t.Errorf("frozen device is %s", st)
	}
}

// TestLwM2MDTLSRegistration: a secure-only device registers over DTLS
// with its hex secret's bytes as PSK.
func TestLwM2MDTLSRegistration(t *testing.T) {
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "dtls-1", true, nil)
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "dtls-1", PSKIdentity: "dtls-1", PSK: []byte(pskText)})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDeviceStatus(t, g, dev, "ONLINE")
	// Freezing drops the registration.
	g.MustDo(http.StatusNoContent, "POST", g.P("/devices/"+dev+"/freeze"), nil)
	if err := c.Update(context.Background()); err == nil {
		t.Fatal("update after freeze succeeded")
	}
}

// TestLwM2MRegistrationExpires: a registration not updated within its
// lifetime ends; the device goes OFFLINE and its Update gets 4.04.
func TestLwM2MRegistrationExpires(t *testing.T) {
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "brief-1", false, nil)
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "brief-1", Lifetime: 1})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitDeviceStatus(t, g, dev, "ONLINE")
	waitDeviceStatus(t, g, dev, "OFFLINE")
	if err := c.Update(context.Background()); coapCode(err) != codes.NotFound {
		t.Fatalf("update after expiry: %v, want 4.04", err)
	}
}

// TestLwM2MTimeoutDeviceKept: a device created with auth_info.timeout that
// registers in time is activated and survives its deadline.
func TestLwM2MTimeoutDeviceKept(t *testing.T) {
	g := startLwM2MGate(t)
	kept := lwm2mDevice(t, g, "timely-1", false, map[string]any{"timeout": 2})
	gone := lwm2mDevice(t, g, "late-1", false, map[string]any{"timeout": 2})
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "timely-1"})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if st, _ := g.Do("GET", g.P("/devices/"+gone), nil); st != http.StatusNotFound {
		t.Fatalf("unconnected device still there (%d)", st)
	}
	d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+kept), nil)
	if d["status"] != "ONLINE" || d["active_time"] == nil {
		t.Fatalf("registered device %v", d)
	}
}

// TestLwM2MQueueModeDelivery: commands for a sleeping UQ client wait and
// are delivered, in order, when it next sends something.
func TestLwM2MQueueModeDelivery(t *testing.T) {
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "sleepy-1", false, nil)
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "sleepy-1", Binding: "UQ", Lifetime: 60})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	c.Sleep()
	time.Sleep(1200 * time.Millisecond) // past queue_window
	first := asyncCommand(t, g, dev, map[string]any{"service_id": "Meter", "command_name": "SET",
		"paras": map[string]any{"value": 1}, "send_strategy": "immediately"})
	second := asyncCommand(t, g, dev, map[string]any{"service_id": "LwM2M", "command_name": "WRITE",
		"paras": map[string]any{"path": "/3/0/14", "value": "+08:00"}, "send_strategy": "delay"})
	time.Sleep(300 * time.Millisecond)
	for _, id := range []string{first, second} {
		if c := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+dev+"/async-commands/"+id), nil); c["status"] != "PENDING" {
			t.Fatalf("command for a sleeping client: %v", c)
		}
	}
	c.Wake()
	if err := c.Update(ctx); err != nil {
		t.Fatal(err)
	}
	a := waitCommand(t, g, dev, first, "SUCCESSFUL")
	b := waitCommand(t, g, dev, second, "SUCCESSFUL")
	if a["sent_time"].(string) > b["sent_time"].(string) {
		t.Fatalf("out of order: %v then %v", a["sent_time"], b["sent_time"])
	}
	if v, _ := c.Value("/19/1/0"); string(v.Bytes()) != `{"value":1}` {
		t.Fatalf("/19/1/0 = %q", v.Bytes())
	}
	if v, _ := c.Value("/3/0/14"); v.Str() != "+08:00" {
		t.Fatalf("/3/0/14 = %v", v)
	}
	list := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+dev+"/async-commands?status=SUCCESSFUL"), nil)
	if list["page"].(map[string]any)["count"].(float64) != 2 {
		t.Fatalf("list: %v", list)
	}
}

// TestLwM2MExpiredCommand: a delayed command nobody picks up in its
// expire_time becomes EXPIRED and is never delivered.
func TestLwM2MExpiredCommand(t *testing.T) {
	g := startLwM2MGate(t)
	dev := lwm2mDevice(t, g, "away-1", false, nil)
	id := asyncCommand(t, g, dev, map[string]any{"service_id": "Meter", "command_name": "SET",
		"paras": map[string]any{"data": base64.StdEncoding.EncodeToString([]byte("late"))}, "send_strategy": "delay", "expire_time": 1})
	waitCommand(t, g, dev, id, "EXPIRED")
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "away-1"})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if v, _ := c.Value("/19/1/0"); bytes.Equal(v.Bytes(), []byte("late")) {
		t.Fatal("expired command delivered")
	}
	// "immediately" for a device that is not registered is refused.
	st, out := g.Do("POST", g.P("/devices/"+lwm2mDevice(t, g, "never-1", false, nil)+"/async-commands"), map[string]any{
		"paras": map[string]any{"a": 1}, "send_strategy": "immediately"})
	if st != http.StatusForbidden || out["error_code"] != "IOTDA.014016" {
		t.Fatalf("immediately to an unregistered device: %d %v", st, out)
	}
	// Bad LwM2M paras are refused up front.
	st, out = g.Do("POST", g.P("/devices/"+dev+"/async-commands"), map[string]any{
		"service_id": "LwM2M", "command_name": "READ", "paras": map[string]any{"path": "/3/x"}})
	if st != http.StatusBadRequest || !strings.Contains(out["error_msg"].(string), "path") {
		t.Fatalf("bad paras: %d %v", st, out)
	}
}
