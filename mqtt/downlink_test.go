package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// TestSyncCommand: the command reaches a device that never subscribed
// (as the Huawei Java and Python SDKs), and its response, published on
// the response topic, is what SendCommand returns.
func TestMQTTSyncCommand(t *testing.T) {
	e := newEnv(t)
	d := e.secretDevice("dev_c", "secret-cmd1", "", false)
	c := e.mustConnect(dial{id: "dev_c", secret: "secret-cmd1"})
	e.ready("dev_c")

	type result struct {
		resp json.RawMessage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := e.srv.SendCommand(ctx, d, registry.Command{CommandID: "cmd-1", ServiceID: "Power",
			CommandName: "reboot", Paras: json.RawMessage(`{"delay":3}`)})
		done <- result{resp, err}
	}()

	m := c.next(t, 5*time.Second)
	if m.Topic() != "$oc/devices/dev_c/sys/commands/request_id=cmd-1" {
		t.Fatalf("command on topic %s", m.Topic())
	}
	var req map[string]any
	if err := json.Unmarshal(m.Payload(), &req); err != nil {
		t.Fatal(err)
	}
	if req["object_device_id"] != "dev_c" || req["service_id"] != "Power" || req["command_name"] != "reboot" ||
		req["paras"].(map[string]any)["delay"] != 3.0 {
		t.Fatalf("command body %s", m.Payload())
	}
	if m.Qos() != 1 {
		t.Errorf("command delivered at QoS %d, want 1", m.Qos())
	}
	c.pub(t, "$oc/devices/dev_c/sys/commands/response/request_id=cmd-1", 1,
		`{"result_code":0,"response_name":"reboot","paras":{"ok":true}}`)

	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	var resp struct {
		ResultCode int            `json:"result_code"`
		Paras      map[string]any `json:"paras"`
	}
	if err := json.Unmarshal(r.resp, &resp); err != nil || resp.ResultCode != 0 || resp.Paras["ok"] != true {
		t.Fatalf("response %s (%v)", r.resp, err)
	}
}

func TestMQTTSyncCommandTimeoutAndOffline(t *testing.T) {
	e := newEnv(t)
	d := e.secretDevice("dev_q", "secret-quiet", "", false)

	if _, err := e.srv.SendCommand(context.Background(), d, registry.Command{CommandID: "c0"}); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("offline device: %v, want ErrNotConnected", err)
	}

	c := e.mustConnect(dial{id: "dev_q", secret: "secret-quiet"})
	e.ready("dev_q")
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := e.srv.SendCommand(ctx, d, registry.Command{CommandID: "c1", Paras: json.RawMessage(`{}`)}); !errors.Is(err, registry.ErrTimeout) {
		t.Fatalf("silent device: %v, want ErrTimeout", err)
	}
	c.next(t, time.Second) // it did get the command
	// A late answer is dropped without harm.
	c.pub(t, "$oc/devices/dev_q/sys/commands/response/request_id=c1", 1, `{"result_code":0}`)

	// A body that is not JSON is returned as a JSON string.
	go func() {
		m := <-c.msgs
		id := m.Topic()[strings.LastIndex(m.Topic(), "=")+1:]
		c.Publish("$oc/devices/dev_q/sys/commands/response/request_id="+id, 1, false, "plain text")
	}()
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	resp, err := e.srv.SendCommand(ctx2, d, registry.Command{CommandID: "c2"})
	if err != nil || string(resp) != `"plain text"` {
		t.Fatalf("got %s, %v", resp, err)
	}
}

// A response to another device's command cannot be forged: the response
// topic of dev_x is not writable by dev_y.
func TestMQTTCommandResponseOnlyFromTarget(t *testing.T) {
	e := newEnv(t)
	dx := e.secretDevice("dev_x", "secret-xxxx", "", false)
	e.secretDevice("dev_y", "secret-yyyy", "", false)
	x := e.mustConnect(dial{id: "dev_x", secret: "secret-xxxx"})
	y := e.mustConnect(dial{id: "dev_y", secret: "secret-yyyy"})
	e.ready("dev_x")
	go func() {
		<-x.msgs
		y.Publish("$oc/devices/dev_x/sys/commands/response/request_id=cx", 0, false, `{"forged":true}`)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if resp, err := e.srv.SendCommand(ctx, dx, registry.Command{CommandID: "cx"}); !errors.Is(err, registry.ErrTimeout) {
		t.Fatalf("got %s, %v; want a timeout", resp, err)
	}
}

func TestMQTTSendMessage(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	d := e.secretDevice("dev_m", "secret-msgs", "", false)
	e.secretDevice("dev_n", "secret-nnnn", "", false)
	if err := e.srv.SendMessage(ctx, d, registry.DownMessage{Payload: []byte("x")}); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("offline: %v", err)
	}
	c := e.mustConnect(dial{id: "dev_m", secret: "secret-msgs"})
	n := e.mustConnect(dial{id: "dev_n", secret: "secret-nnnn"})
	n.mustSub(t, "$oc/devices/dev_n/#")
	e.ready("dev_m")

	// The default topic needs no subscription.
	if err := e.srv.SendMessage(ctx, d, registry.DownMessage{MessageID: "m1", Payload: []byte("hello")}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t, 5*time.Second); m.Topic() != "$oc/devices/dev_m/sys/messages/down" || string(m.Payload()) != "hello" {
		t.Fatalf("got %s %q", m.Topic(), m.Payload())
	}

	// A custom topic needs one.
	custom := "$oc/devices/dev_m/user/display"
	if err := e.srv.SendMessage(ctx, d, registry.DownMessage{Topic: custom, Payload: []byte("a")}); !errors.Is(err, registry.ErrNotSubscribed) {
		t.Fatalf("unsubscribed custom topic: %v", err)
	}
	// mochi shares one packet id space between the client's packets and
	// its own unacknowledged downlinks: wait for the PUBACK of "hello"
	// so the SUBSCRIBE cannot collide with it (SUBACK 0x80).
	e.settled("dev_m")
	if got := c.sub(t, "$oc/devices/dev_m/user/#"); got["$oc/devices/dev_m/user/#"] != 1 {
		t.Fatalf("SUBACK %v", got)
	}
	if err := e.srv.SendMessage(ctx, d, registry.DownMessage{Topic: custom, Payload: []byte("b")}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t, 5*time.Second); m.Topic() != custom || string(m.Payload()) != "b" {
		t.Fatalf("got %s %q", m.Topic(), m.Payload())
	}

	// No topic outside the device's own downlinks.
	for _, topic := range []string{"$oc/devices/dev_n/user/display", "$oc/devices/dev_n/sys/messages/down",
		"$oc/devices/dev_m/sys/messages/up", "$oc/devices/dev_m/user/+", "anything"} {
		if err := e.srv.SendMessage(ctx, d, registry.DownMessage{Topic: topic, Payload: []byte("z")}); !isValidation(err) {
			t.Errorf("topic %s: %v, want a validation error", topic, err)
		}
	}
	n.none(t, 200*time.Millisecond)
}

// TestUplinks: property reports update the shadow, messages are kept.
func TestMQTTUplinks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.secretDevice("dev_u", "secret-upup", "", false)
	c := e.mustConnect(dial{id: "dev_u", secret: "secret-upup"})

	c.pub(t, "$oc/devices/dev_u/sys/properties/report", 1,
		`{"services":[{"service_id":"Meter","properties":{"power":12.5,"state":"on"}},
		              {"service_id":"Battery","properties":{"level":80},"event_time":"20250414T013000Z"}]}`)
	c.pub(t, "$oc/devices/dev_u/sys/properties/report", 1, `{"services":[{"service_id":"Meter","properties":{"power":13}}]}`)
	c.pub(t, "$oc/devices/dev_u/sys/properties/report", 1, `not json`)
	c.pub(t, "$oc/devices/dev_u/sys/messages/up", 1, `{"content":"hi"}`)
	c.pub(t, "$oc/devices/dev_u/user/logs", 0, `line 1`)
	c.pub(t, "$oc/devices/dev_u/sys/events/up", 1, `{"services":[]}`)

	eventually(t, func() bool {
		msgs, _ := e.reg.Messages(ctx, e.project, "dev_u", 10)
		return len(msgs) == 2
	}, "two stored messages")
	msgs, _ := e.reg.Messages(ctx, e.project, "dev_u", 10)
	if msgs[0].Topic != "$oc/devices/dev_u/user/logs" || string(msgs[0].Payload) != "line 1" ||
		msgs[1].Topic != "$oc/devices/dev_u/sys/messages/up" || string(msgs[1].Payload) != `{"content":"hi"}` {
		t.Fatalf("messages %+v", msgs)
	}

	sh, err := e.reg.DeviceShadow(ctx, e.project, "dev_u")
	if err != nil {
		t.Fatal(err)
	}
	props := map[string]map[string]string{}
	for _, s := range sh.Services {
		props[s.ServiceID] = map[string]string{}
		for k, v := range s.Properties {
			props[s.ServiceID][k] = string(v)
		}
		if s.ServiceID == "Battery" && !s.EventTime.Equal(time.Date(2025, 4, 14, 1, 30, 0, 0, time.UTC)) {
			t.Errorf("Battery event time %v, want the reported 2025-04-14 01:30:00Z", s.EventTime)
		}
	}
	if props["Meter"]["power"] != "13" || props["Meter"]["state"] != `"on"` || props["Battery"]["level"] != "80" {
		t.Fatalf("shadow %v", props)
	}
	if got := e.srv.Stats().RejectedUplinks; got != 1 {
		t.Fatalf("rejected uplinks %d, want 1 (the malformed report)", got)
	}
}
