package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// A properties get and set reach the device on their request topics with
// the bodies the Huawei device SDKs parse, and the device's answer on the
// matching response topic is what SendProperties returns; an answer on
// the other kind's (or a command's) response topic does not count.
func TestMQTTProperties(t *testing.T) {
	e := newEnv(t)
	d := e.secretDevice("dev_p", "secret-props", "", false)
	c := e.mustConnect(dial{id: "dev_p", secret: "secret-props"})
	e.ready("dev_p")

	for _, tc := range []struct {
		name      string
		req       registry.PropertiesRequest
		topic     string
		body      string
		wrongResp string // a response topic that must not complete it
		resp      string
	}{
		{"get", registry.PropertiesRequest{Op: registry.PropertiesGet, RequestID: "g1", ServiceID: "Meter"},
			"$oc/devices/dev_p/sys/properties/get/request_id=g1",
			`{"object_device_id":"dev_p","service_id":"Meter"}`,
			"$oc/devices/dev_p/sys/properties/set/response/request_id=g1",
			`{"services":[{"service_id":"Meter","properties":{"v":220}}]}`},
		{"set", registry.PropertiesRequest{Op: registry.PropertiesSet, RequestID: "s1",
			Services: json.RawMessage(`[{"service_id":"Meter","properties":{"limit":5}}]`)},
			"$oc/devices/dev_p/sys/properties/set/request_id=s1",
			`{"object_device_id":"dev_p","services":[{"service_id":"Meter","properties":{"limit":5}}]}`,
			"$oc/devices/dev_p/sys/commands/response/request_id=s1",
			`{"result_code":0,"result_desc":"success"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				resp json.RawMessage
				err  error
			}
			done := make(chan result, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				resp, err := e.srv.SendProperties(ctx, d, tc.req)
				done <- result{resp, err}
			}()
			m := c.next(t, 5*time.Second)
			if m.Topic() != tc.topic || string(m.Payload()) != tc.body || m.Qos() != 1 {
				t.Fatalf("got %s %s at QoS %d, want %s %s", m.Topic(), m.Payload(), m.Qos(), tc.topic, tc.body)
			}
			c.pub(t, tc.wrongResp, 1, `{"wrong":true}`)
			c.pub(t, tc.topic[:len(tc.topic)-len("request_id="+tc.req.RequestID)]+"response/request_id="+tc.req.RequestID, 1, tc.resp)
			r := <-done
			if r.err != nil || string(r.resp) != tc.resp {
				t.Fatalf("got %s %v, want %s", r.resp, r.err, tc.resp)
			}
		})
	}

	// Silent: a timeout; offline: ErrNotConnected.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := e.srv.SendProperties(ctx, d, registry.PropertiesRequest{Op: registry.PropertiesGet, RequestID: "g2"}); !errors.Is(err, registry.ErrTimeout) {
		t.Fatalf("silent device: %v, want ErrTimeout", err)
	}
	other := e.secretDevice("dev_off", "secret-off1", "", false)
	if _, err := e.srv.SendProperties(context.Background(), other, registry.PropertiesRequest{Op: registry.PropertiesGet, RequestID: "g3"}); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("offline device: %v, want ErrNotConnected", err)
	}
}
