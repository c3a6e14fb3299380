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

// aliCall runs send in the background and returns its outcome's channel.
func aliCall(send func(ctx context.Context) (json.RawMessage, error)) <-chan result {
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := send(ctx)
		done <- result{resp, err}
	}()
	return done
}

type result struct {
	resp json.RawMessage
	err  error
}

// alinkReq reads the Alink request a device received.
func alinkReq(t *testing.T, payload []byte) alinkDownRequest {
	t.Helper()
	var r alinkDownRequest
	if err := json.Unmarshal(payload, &r); err != nil || r.ID == "" || r.Version != "1.0" {
		t.Fatalf("not an Alink request: %s", payload)
	}
	return r
}

// A property set reaches an Alibaba device as thing.service.property.set
// with the identifiers of its thing model; its set_reply, matched by id,
// is the IoTDA response; a get is refused as Alink devices answer none.
func TestMQTTAliPropertySet(t *testing.T) {
	e := newEnv(t)
	e.aliProduct("pkset", "prodSecretSet1", false, false, "")
	d := e.aliDevice("pkset", "dset", "secretSet00001", false)
	c := e.mustConnect(aliDial("pkset", "dset", "secretSet00001", false))
	e.ready(d.DeviceID)

	for _, tc := range []struct {
		name, reply, want string // %s: the request's id
	}{
		{"accepted", `{"id":"%s","code":200,"data":{},"message":"success"}`, `{"result_code":0,"result_desc":"success"}`},
		{"device error", `{"id":"%s","code":9201,"message":"value out of range"}`, `{"result_code":9201,"result_desc":"value out of range"}`},
		{"not Alink", `{"id":"%s","ok":true}`, `{"id":"%s","ok":true}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := aliCall(func(ctx context.Context) (json.RawMessage, error) {
				return e.srv.SendProperties(ctx, d, registry.PropertiesRequest{Op: registry.PropertiesSet, RequestID: "r1",
					Services: json.RawMessage(`[{"service_id":"default","properties":{"Power":1}},{"service_id":"light","properties":{"Level":3}}]`)})
			})
			m := c.next(t, 5*time.Second)
			req := alinkReq(t, m.Payload())
			if m.Topic() != "/sys/pkset/dset/thing/service/property/set" || m.Qos() != 1 ||
				req.Method != "thing.service.property.set" || string(req.Params) != `{"Power":1,"light:Level":3}` {
				t.Fatalf("got %s %s", m.Topic(), m.Payload())
			}
			// Another id, or the other reply topic, does not complete it.
			c.pub(t, "/sys/pkset/dset/thing/service/property/set_reply", 1, `{"id":"999999","code":200}`)
			c.pub(t, "/sys/pkset/dset/rrpc/response/"+req.ID, 1, `{"code":200}`)
			c.pub(t, "/sys/pkset/dset/thing/service/property/set_reply", 1, strings.ReplaceAll(tc.reply, "%s", req.ID))
			r := <-done
			if want := strings.ReplaceAll(tc.want, "%s", req.ID); r.err != nil || string(r.resp) != want {
				t.Fatalf("got %s %v, want %s", r.resp, r.err, want)
			}
		})
	}

	// A numeric id, as the C SDKs send it, counts too.
	done := aliCall(func(ctx context.Context) (json.RawMessage, error) {
		return e.srv.SendProperties(ctx, d, registry.PropertiesRequest{Op: registry.PropertiesSet, RequestID: "r2",
			Services: json.RawMessage(`[{"properties":{"Power":0}}]`)})
	})
	req := alinkReq(t, c.next(t, 5*time.Second).Payload())
	c.pub(t, "/sys/pkset/dset/thing/service/property/set_reply", 1, `{"id":`+req.ID+`,"code":200}`)
	if r := <-done; r.err != nil || string(r.resp) != `{"result_code":0}` {
		t.Fatalf("numeric id: %s %v", r.resp, r.err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	set := registry.PropertiesRequest{Op: registry.PropertiesSet, RequestID: "r3", Services: json.RawMessage(`[{"properties":{"Power":1}}]`)}
	if _, err := e.srv.SendProperties(ctx, d, set); !errors.Is(err, registry.ErrTimeout) {
		t.Fatalf("silent device: %v, want ErrTimeout", err)
	}
	c.next(t, time.Second) // the unanswered set
	if _, err := e.srv.SendProperties(context.Background(), d, registry.PropertiesRequest{Op: registry.PropertiesGet, RequestID: "g1",
		ServiceID: "light"}); !errors.Is(err, registry.ErrUnsupported) || !strings.Contains(err.Error(), "Alibaba") {
		t.Fatalf("get: %v, want ErrUnsupported", err)
	}
	bad := registry.PropertiesRequest{Op: registry.PropertiesSet, RequestID: "r4", Services: json.RawMessage(`[{"properties":{"a/b":1}}]`)}
	if _, err := e.srv.SendProperties(context.Background(), d, bad); !isValidation(err) {
		t.Fatalf("topic characters in an identifier: %v, want a validation error", err)
	}
	c.none(t, 200*time.Millisecond)

	offline := e.aliDevice("pkset", "doff", "secretSetOff01", false)
	if _, err := e.srv.SendProperties(context.Background(), offline, set); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("offline device: %v, want ErrNotConnected", err)
	}
}

// A command is an RRPC call of the thing-model service it names; the
// device's answer on rrpc/response/{messageId}, or on the service's
// _reply with the id echoed, is the IoTDA command response.
func TestMQTTAliServiceCall(t *testing.T) {
	e := newEnv(t)
	e.aliProduct("pksvc", "prodSecretSvc1", false, false, "")
	d := e.aliDevice("pksvc", "dsvc", "secretSvc00001", false)
	c := e.mustConnect(aliDial("pksvc", "dsvc", "secretSvc00001", false))
	e.ready(d.DeviceID)

	for _, tc := range []struct {
		name       string
		cmd        registry.Command
		method     string
		replyTopic string // %s: the request's id
		reply      string // %s: the request's id
		want       string
	}{
		{"RRPC, default module",
			registry.Command{CommandID: "c1", ServiceID: "default", CommandName: "reboot", Paras: json.RawMessage(`{"delay":5}`)},
			"thing.service.reboot", "/sys/pksvc/dsvc/rrpc/response/%s",
			`{"id":"a-fresh-guid","code":200,"data":{"out":1}}`, `{"result_code":0,"paras":{"out":1}}`},
		{"service reply, module",
			registry.Command{CommandID: "c2", ServiceID: "light", CommandName: "blink", Paras: json.RawMessage(`{}`)},
			"thing.service.light:blink", "/sys/pksvc/dsvc/thing/service/light:blink_reply",
			`{"id":"%s","code":9201,"message":"busy"}`, `{"result_code":9201,"result_desc":"busy"}`},
		{"RRPC, raw answer",
			registry.Command{CommandID: "c3", CommandName: "ping", Paras: json.RawMessage(`{"n":1}`)},
			"thing.service.ping", "/sys/pksvc/dsvc/rrpc/response/%s", `pong`, `"pong"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			done := aliCall(func(ctx context.Context) (json.RawMessage, error) { return e.srv.SendCommand(ctx, d, tc.cmd) })
			m := c.next(t, 5*time.Second)
			req := alinkReq(t, m.Payload())
			if m.Topic() != "/sys/pksvc/dsvc/rrpc/request/"+req.ID || m.Qos() != 1 || req.Method != tc.method ||
				string(req.Params) != string(tc.cmd.Paras) {
				t.Fatalf("got %s %s", m.Topic(), m.Payload())
			}
			// Another messageId, or a reply without the id, does not
			// complete it.
			c.pub(t, "/sys/pksvc/dsvc/rrpc/response/1"+req.ID, 1, `{"code":200}`)
			c.pub(t, "/sys/pksvc/dsvc/thing/service/x_reply", 1, `{"code":200}`)
			c.pub(t, strings.ReplaceAll(tc.replyTopic, "%s", req.ID), 1, strings.ReplaceAll(tc.reply, "%s", req.ID))
			r := <-done
			if r.err != nil || string(r.resp) != tc.want {
				t.Fatalf("got %s %v, want %s", r.resp, r.err, tc.want)
			}
		})
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := e.srv.SendCommand(ctx, d, registry.Command{CommandID: "c4", CommandName: "reboot"}); !errors.Is(err, registry.ErrTimeout) {
		t.Fatalf("silent device: %v, want ErrTimeout", err)
	}
	if m := c.next(t, time.Second); string(alinkReq(t, m.Payload()).Params) != "{}" {
		t.Fatalf("a command without paras: %s", m.Payload())
	}
	if _, err := e.srv.SendCommand(context.Background(), d, registry.Command{CommandID: "c5", ServiceID: "light"}); !isValidation(err) {
		t.Fatalf("no command_name: %v, want a validation error", err)
	}
	c.none(t, 200*time.Millisecond)
}

// A Huawei-dialect session of the same device still gets IoTDA topics:
// the wire format is the live session's.
func TestMQTTAliDownlinkFollowsSession(t *testing.T) {
	e := newEnv(t)
	e.aliProduct("pkboth", "prodSecretBoth", false, false, "")
	d := e.aliDevice("pkboth", "dboth", "secretBoth0001", false)
	c := e.mustConnect(dial{id: d.DeviceID, secret: "secretBoth0001"})
	e.ready(d.DeviceID)
	done := aliCall(func(ctx context.Context) (json.RawMessage, error) {
		return e.srv.SendCommand(ctx, d, registry.Command{CommandID: "h1", CommandName: "reboot", Paras: json.RawMessage(`{}`)})
	})
	if m := c.next(t, 5*time.Second); m.Topic() != commandTopic(d.DeviceID, "h1") {
		t.Fatalf("Huawei session got %s", m.Topic())
	}
	c.pub(t, "$oc/devices/"+d.DeviceID+"/sys/commands/response/request_id=h1", 1, `{"result_code":0}`)
	if r := <-done; r.err != nil || string(r.resp) != `{"result_code":0}` {
		t.Fatalf("got %s %v", r.resp, r.err)
	}
}

func TestAlinkSetParams(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "": a validation error
	}{
		{`[{"service_id":"default","properties":{"a":1,"b":"x"}}]`, `{"a":1,"b":"x"}`},
		{`[{"properties":{"a":{"v":[1]}}}]`, `{"a":{"v":[1]}}`},
		{`[{"service_id":"m1","properties":{"a":1}},{"service_id":"m2","properties":{"a":2}}]`, `{"m1:a":1,"m2:a":2}`},
		{`[{"service_id":"m1","properties":{"a":1}},{"properties":{"a":2}}]`, `{"a":2,"m1:a":1}`},
		{`[{"properties":{"a":1}},{"service_id":"default","properties":{"a":2}}]`, ""}, // one property twice
		{`[{"service_id":"m","properties":{"a":1}},{"service_id":"m","properties":{"a":2}}]`, ""},
		{`[{"service_id":"m","properties":{}}]`, ""},
		{`[{"service_id":"m"}]`, ""},
		{`[{"service_id":"a:b","properties":{"x":1}}]`, ""},
		{`[{"service_id":"a/b","properties":{"x":1}}]`, ""},
		{`[{"properties":{"m:x":1}}]`, ""}, // would name module m
		{`[{"properties":{"#":1}}]`, ""},
		{`[{"properties":{"":1}}]`, ""},
		{`{"properties":{"x":1}}`, ""},
	} {
		got, err := alinkSetParams(json.RawMessage(tc.in))
		if tc.want == "" {
			if !isValidation(err) {
				t.Errorf("%s: %s %v, want a validation error", tc.in, got, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %s %v, want %s", tc.in, got, err, tc.want)
		}
	}
}

func TestAlinkServiceIdentifier(t *testing.T) {
	for _, tc := range []struct {
		service, command, want string // want "": a validation error
	}{
		{"", "reboot", "reboot"},
		{"default", "reboot", "reboot"},
		{"light", "blink", "light:blink"},
		{"light", "", ""},
		{"", "a:b", ""},
		{"a+b", "blink", ""},
		{"light", "x/y", ""},
	} {
		got, err := alinkServiceIdentifier(tc.service, tc.command)
		if tc.want == "" {
			if !isValidation(err) {
				t.Errorf("%q %q: %q %v, want a validation error", tc.service, tc.command, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q %q: %q %v, want %q", tc.service, tc.command, got, err, tc.want)
		}
	}
}

func TestIotdaResponse(t *testing.T) {
	for _, tc := range []struct {
		in      string
		command bool
		want    string
	}{
		{`{"id":"1","code":200,"data":{}}`, false, `{"result_code":0}`},
		{`{"id":"1","code":200,"data":{"out":1}}`, true, `{"result_code":0,"paras":{"out":1}}`},
		{`{"id":"1","code":"200","data":null,"message":"success"}`, true, `{"result_code":0,"result_desc":"success"}`},
		{`{"id":"1","code":6813,"message":"bad"}`, false, `{"result_code":6813,"result_desc":"bad"}`},
		{`{"id":"1","code":"x"}`, false, `{"id":"1","code":"x"}`},
		{`{"result_code":1}`, true, `{"result_code":1}`},
		{`"text"`, true, `"text"`},
	} {
		if got := iotdaResponse(json.RawMessage(tc.in), tc.command); string(got) != tc.want {
			t.Errorf("%s: %s, want %s", tc.in, got, tc.want)
		}
	}
}

// Messages may name an Alibaba device's custom topics; a session of that
// dialect receives a message only on a topic it subscribed to, the
// IoTDA default topic included.
func TestMQTTAliMessages(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.aliProduct("pkmsg", "prodSecretMsg1", false, false, "")
	d := e.aliDevice("pkmsg", "dmsg", "secretMsg00001", false)
	c := e.mustConnect(aliDial("pkmsg", "dmsg", "secretMsg00001", false))
	e.ready(d.DeviceID)

	custom := "/pkmsg/dmsg/user/get"
	for _, topic := range []string{"", "$oc/devices/" + d.DeviceID + "/sys/messages/down", custom} {
		if err := e.srv.SendMessage(ctx, d, registry.DownMessage{Topic: topic, Payload: []byte("x")}); !errors.Is(err, registry.ErrNotSubscribed) {
			t.Errorf("topic %q before a subscription: %v, want ErrNotSubscribed", topic, err)
		}
	}
	c.mustSub(t, "/pkmsg/dmsg/user/#")
	if err := e.srv.SendMessage(ctx, d, registry.DownMessage{Topic: custom, Payload: []byte("on")}); err != nil {
		t.Fatal(err)
	}
	if m := c.next(t, 5*time.Second); m.Topic() != custom || string(m.Payload()) != "on" {
		t.Fatalf("got %s %q", m.Topic(), m.Payload())
	}
	for _, topic := range []string{"/pkmsg/other/user/get", "/sys/pkmsg/dmsg/thing/service/property/set",
		"/pkmsg/dmsg/user/", "/pkmsg/dmsg/user/+"} {
		if err := e.srv.CheckMessage(d, registry.DownMessage{Topic: topic}); !isValidation(err) {
			t.Errorf("topic %s: %v, want a validation error", topic, err)
		}
	}
	c.none(t, 200*time.Millisecond)
}

// A sub-device logged in through an Alibaba gateway is reached on its own
// topics through the gateway's session, and the gateway's answer on them
// completes the request; once logged out, it is offline.
func TestMQTTAliSubDeviceDownlinks(t *testing.T) {
	g := newGatewayEnv(t)
	gw := g.connectGateway()
	gw.wantCode(t, topoAddTopic, alink("1", []any{signed("a1Hhs4E2xUG", "2001", subSecret)}), 200)
	gw.wantCode(t, loginTopic, alink("2", signed("a1Hhs4E2xUG", "2001", subSecret)), 200)
	g.waitStatus(g.sub.DeviceID, registry.StatusOnline)

	done := aliCall(func(ctx context.Context) (json.RawMessage, error) {
		return g.srv.SendProperties(ctx, g.sub, registry.PropertiesRequest{Op: registry.PropertiesSet, RequestID: "r1",
			Services: json.RawMessage(`[{"properties":{"Power":1}}]`)})
	})
	m := gw.next(t, 5*time.Second)
	req := alinkReq(t, m.Payload())
	if m.Topic() != "/sys/a1Hhs4E2xUG/2001/thing/service/property/set" || string(req.Params) != `{"Power":1}` {
		t.Fatalf("gateway got %s %s", m.Topic(), m.Payload())
	}
	// The gateway's own reply topic does not answer for its sub-device.
	gw.pub(t, "/sys/gwp/gw1/thing/service/property/set_reply", 1, `{"id":"`+req.ID+`","code":200}`)
	gw.pub(t, "/sys/a1Hhs4E2xUG/2001/thing/service/property/set_reply", 1, `{"id":"`+req.ID+`","code":6813,"message":"read only"}`)
	if r := <-done; r.err != nil || string(r.resp) != `{"result_code":6813,"result_desc":"read only"}` {
		t.Fatalf("got %s %v", r.resp, r.err)
	}

	done = aliCall(func(ctx context.Context) (json.RawMessage, error) {
		return g.srv.SendCommand(ctx, g.sub, registry.Command{CommandID: "c1", CommandName: "reboot", Paras: json.RawMessage(`{}`)})
	})
	m = gw.next(t, 5*time.Second)
	req = alinkReq(t, m.Payload())
	if m.Topic() != "/sys/a1Hhs4E2xUG/2001/rrpc/request/"+req.ID || req.Method != "thing.service.reboot" {
		t.Fatalf("gateway got %s %s", m.Topic(), m.Payload())
	}
	gw.pub(t, "/sys/a1Hhs4E2xUG/2001/rrpc/response/"+req.ID, 1, `{"code":200,"data":{"ok":true}}`)
	if r := <-done; r.err != nil || string(r.resp) != `{"result_code":0,"paras":{"ok":true}}` {
		t.Fatalf("got %s %v", r.resp, r.err)
	}

	gw.wantCode(t, logoutTopic, alink("3", map[string]any{"productKey": "a1Hhs4E2xUG", "deviceName": "2001"}), 200)
	g.waitStatus(g.sub.DeviceID, registry.StatusOffline)
	if _, err := g.srv.SendCommand(context.Background(), g.sub, registry.Command{CommandID: "c2", CommandName: "reboot"}); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("logged-out sub-device: %v, want ErrNotConnected", err)
	}
}
