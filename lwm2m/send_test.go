package lwm2m_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// kept returns the device's kept messages, newest first.
func (f *fixture) kept(dev string) []registry.Message {
	f.t.Helper()
	msgs, err := f.reg.Messages(context.Background(), "p", dev, 100)
	if err != nil {
		f.t.Fatal(err)
	}
	return msgs
}

// reported returns the device's reported properties of service LwM2M.
func (f *fixture) reported(dev string) (map[string]json.RawMessage, time.Time) {
	f.t.Helper()
	sh, err := f.reg.ShadowOf(context.Background(), dev)
	if err != nil {
		f.t.Fatal(err)
	}
	for _, s := range sh.Services {
		if s.ServiceID == "LwM2M" {
			return s.Properties, s.EventTime
		}
	}
	return nil, time.Time{}
}

// TestLwM2MSend: a registered client's Send, in SenML JSON and CBOR, over
// NoSec and DTLS, is kept as a device message on /dp and as reported
// properties of the service LwM2M, its times resolved.
func TestLwM2MSend(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		secure bool
		ct     uint16
	}{
		{"NoSec SenML JSON", false, format.FormatSenMLJSON},
		{"NoSec SenML CBOR", false, format.FormatSenMLCBOR},
		{"DTLS SenML CBOR", true, format.FormatSenMLCBOR},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node := "send-" + map[bool]string{false: "nosec", true: "dtls"}[tc.secure] + "-" + map[uint16]string{110: "json", 112: "cbor"}[tc.ct]
			d := f.device(node, tc.secure)
			cfg := lwm2mclient.Config{Endpoint: node}
			if tc.secure {
				cfg.PSKIdentity, cfg.PSK = node, lwm2m.PSK(secret)
			}
			c := f.client(cfg)
			if err := c.Register(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.Set("/3/0/9", format.IntegerValue(87)); err != nil {
				t.Fatal(err)
			}
			if err := c.Send(ctx, tc.ct, "/3/0/0", "/3/0/9"); err != nil {
				t.Fatal(err)
			}
			msgs := f.kept(d.DeviceID)
			if len(msgs) != 1 || msgs[0].Topic != "/dp" {
				t.Fatalf("messages %+v", msgs)
			}
			var views []struct {
				Path  string `json:"path"`
				Kind  string `json:"kind"`
				Value any    `json:"value"`
			}
			if err := json.Unmarshal(msgs[0].Payload, &views); err != nil {
				t.Fatalf("message %s: %v", msgs[0].Payload, err)
			}
			if len(views) != 2 || views[0].Path != "/3/0/0" || views[0].Value != "iotgate" || views[1].Path != "/3/0/9" || views[1].Kind != "Integer" || views[1].Value != 87.0 {
				t.Fatalf("message values %s", msgs[0].Payload)
			}
			props, _ := f.reported(d.DeviceID)
			if string(props["/3/0/0"]) != `"iotgate"` || string(props["/3/0/9"]) != "87" {
				t.Fatalf("reported properties %s", props)
			}
		})
	}
}

// TestLwM2MSendTimes: absolute and relative SenML times become the
// report's event times; the shadow keeps the latest value.
func TestLwM2MSendTimes(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	d := f.device("timed", false)
	c := f.client(lwm2mclient.Config{Endpoint: "timed"})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	battery := format.NewPath(3, 0, 9)
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	recs := []format.Record{
		{Path: battery, Value: format.IntegerValue(90), Time: float64(at.Unix())},
		{Path: battery, Value: format.IntegerValue(80), Time: float64(at.Add(time.Hour).Unix())},
		{Path: format.NewPath(3, 0, 0), Value: format.StringValue("acme"), Time: -30}, // 30 s ago
	}
	before := time.Now()
	if err := c.SendRecords(ctx, format.FormatSenMLJSON, recs); err != nil {
		t.Fatal(err)
	}
	props, eventTime := f.reported(d.DeviceID)
	if string(props["/3/0/9"]) != "80" || string(props["/3/0/0"]) != `"acme"` {
		t.Fatalf("reported %s", props)
	}
	// The relative time is the latest (now - 30 s).
	if eventTime.Before(before.Add(-31*time.Second)) || eventTime.After(time.Now().Add(-29*time.Second)) {
		t.Fatalf("event time %v, want about 30 s before %v", eventTime, before)
	}
	var views []struct {
		Time float64 `json:"time"`
	}
	if err := json.Unmarshal(f.kept(d.DeviceID)[0].Payload, &views); err != nil {
		t.Fatal(err)
	}
	if len(views) != 3 || views[0].Time != float64(at.Unix()) || views[2].Time < float64(before.Unix()-31) {
		t.Fatalf("message times %+v", views)
	}
}

// TestLwM2MSendRefusals: a Send from a client with no registration, in a
// format other than SenML, malformed, or naming an object instance the
// registration does not list gets its CoAP code, and nothing is kept.
func TestLwM2MSendRefusals(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	d := f.device("refused", false)
	c := f.client(lwm2mclient.Config{Endpoint: "refused", Objects: "</1/0>,</3/0>"})
	stranger := f.client(lwm2mclient.Config{Endpoint: "refused"}) // never registers
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	raw := func(cl *lwm2mclient.Client, ct message.MediaType, body string) codes.Code {
		t.Helper()
		resp, err := cl.Do(ctx, codes.POST, "/dp", nil, ct, []byte(body))
		if err != nil {
			t.Fatal(err)
		}
		return resp.Code
	}
	good := `[{"n":"/3/0/9","v":50}]`
	for _, tc := range []struct {
		name string
		cl   *lwm2mclient.Client
		ct   message.MediaType
		body string
		want codes.Code
	}{
		{"unregistered client", stranger, message.AppSenmlJSON, good, codes.BadRequest},
		{"TLV", c, message.MediaType(format.FormatTLV), "\xc1\x09\x32", codes.UnsupportedMediaType},
		{"text", c, message.TextPlain, "50", codes.UnsupportedMediaType},
		{"malformed JSON", c, message.AppSenmlJSON, `[{"n":"/3/0/9","v":}]`, codes.BadRequest},
		{"malformed CBOR", c, message.AppSenmlCbor, "\x81\xa2\x00", codes.BadRequest},
		{"bad path", c, message.AppSenmlJSON, `[{"n":"/3/x/9","v":1}]`, codes.BadRequest},
		{"no value", c, message.AppSenmlJSON, `[{"n":"/3/0/9"}]`, codes.BadRequest},
		{"object, not a resource", c, message.AppSenmlJSON, `[{"n":"/3/0","v":1}]`, codes.BadRequest},
		{"empty pack", c, message.AppSenmlJSON, `[]`, codes.BadRequest},
		{"unregistered instance", c, message.AppSenmlJSON, `[{"n":"/3/0/9","v":50},{"n":"/3/1/9","v":1}]`, codes.NotFound},
		{"unregistered object", c, message.AppSenmlJSON, `[{"n":"/3303/0/5700","v":21.5}]`, codes.NotFound},
	} {
		if got := raw(tc.cl, tc.ct, tc.body); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if resp, err := c.Do(ctx, codes.GET, "/dp", nil, 0, nil); err != nil || resp.Code != codes.MethodNotAllowed {
		t.Errorf("GET /dp: %v %v, want 4.05", resp.Code, err)
	}
	if msgs := f.kept(d.DeviceID); len(msgs) != 0 {
		t.Fatalf("refused Sends kept %d messages", len(msgs))
	}
	if props, _ := f.reported(d.DeviceID); len(props) != 0 {
		t.Fatalf("refused Sends reported %s", props)
	}
	if got := raw(c, message.AppSenmlJSON, good); got != codes.Changed {
		t.Fatalf("a good Send after the refusals: %s", got)
	}
	// Once de-registered, its address leads nowhere.
	if err := c.Deregister(ctx); err != nil {
		t.Fatal(err)
	}
	if got := raw(c, message.AppSenmlJSON, good); got != codes.BadRequest {
		t.Fatalf("Send after De-register: %s, want 4.00", got)
	}
}

// TestLwM2MSendFollowsTheAddress: a NoSec client that updates from a new
// address sends from there; its old address no longer names it.
func TestLwM2MSendFollowsTheAddress(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	d := f.device("mover", false)
	first := f.client(lwm2mclient.Config{Endpoint: "mover"})
	if err := first.Register(ctx); err != nil {
		t.Fatal(err)
	}
	second := f.client(lwm2mclient.Config{Endpoint: "mover"})
	second.Resume(first)
	if err := second.Update(ctx); err != nil {
		t.Fatal(err)
	}
	if err := first.Send(ctx, format.FormatSenMLJSON, "/3/0/0"); codeOf(err) != codes.BadRequest {
		t.Fatalf("Send from the old address: %v, want 4.00", err)
	}
	if err := second.Send(ctx, format.FormatSenMLJSON, "/3/0/0"); err != nil {
		t.Fatal(err)
	}
	if n := len(f.kept(d.DeviceID)); n != 1 {
		t.Fatalf("%d messages kept, want 1", n)
	}
}

// TestLwM2MSendWakesQueueMode: a Send is an uplink, so a queue-mode
// client's held commands go out after it.
func TestLwM2MSendWakesQueueMode(t *testing.T) {
	f := newFixture(t, func(o *lwm2m.Options) { o.QueueWindow = 300 * time.Millisecond })
	ctx := context.Background()
	d := f.device("sleepy", false)
	c := f.client(lwm2mclient.Config{Endpoint: "sleepy", Binding: "UQ"})
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(400 * time.Millisecond) // asleep
	id := f.command(d.DeviceID, "LwM2M", "READ", `{"path":"/3/0/0"}`, true)
	time.Sleep(100 * time.Millisecond)
	if cmd, _ := f.reg.AsyncCommand(ctx, "p", d.DeviceID, id); cmd.Status != registry.AsyncPending {
		t.Fatalf("command to a sleeping client is %s", cmd.Status)
	}
	if err := c.Send(ctx, format.FormatSenMLCBOR, "/3/0/9"); err != nil {
		t.Fatal(err)
	}
	f.waitCommand(d.DeviceID, id, registry.AsyncSuccessful)
}
