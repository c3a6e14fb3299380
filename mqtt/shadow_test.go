package mqtt

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// A device's shadow get is answered on its response topic with the same
// request id, in the device SDKs' Shadow shape: the service asked for, or
// every service when the request names none.
func TestMQTTShadowGet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.secretDevice("dev_s", "secret-shadow", "", false)
	if _, err := e.reg.UpdateDesired(ctx, e.project, "dev_s", []registry.DesiredUpdate{
		{ServiceID: "Meter", Desired: map[string]json.RawMessage{"limit": json.RawMessage("5")}},
		{ServiceID: "Light", Desired: map[string]json.RawMessage{"on": json.RawMessage("true")}},
	}); err != nil {
		t.Fatal(err)
	}
	c := e.mustConnect(dial{id: "dev_s", secret: "secret-shadow"})
	e.ready("dev_s")
	c.pub(t, "$oc/devices/dev_s/sys/properties/report", 1, `{"services":[{"service_id":"Meter","properties":{"limit":3},"event_time":"20250414T013000Z"}]}`)
	eventually(t, func() bool {
		sh, _ := e.reg.ShadowOf(ctx, "dev_s")
		return sh.Services[0].Properties != nil
	}, "the report in the shadow")

	c.pub(t, "$oc/devices/dev_s/sys/shadow/get/request_id=r1", 1, `{"object_device_id":"dev_s","service_id":"Meter"}`)
	m := c.next(t, 5*time.Second)
	if m.Topic() != "$oc/devices/dev_s/sys/shadow/get/response/request_id=r1" {
		t.Fatalf("answered on %s", m.Topic())
	}
	var got struct {
		ObjectDeviceID string `json:"object_device_id"`
		Shadow         []struct {
			ServiceID string `json:"service_id"`
			Desired   *struct {
				Properties map[string]any `json:"properties"`
				EventTime  string         `json:"event_time"`
			} `json:"desired"`
			Reported *struct {
				Properties map[string]any `json:"properties"`
				EventTime  string         `json:"event_time"`
			} `json:"reported"`
			Version int64 `json:"version"`
		} `json:"shadow"`
	}
	if err := json.Unmarshal(m.Payload(), &got); err != nil {
		t.Fatal(err)
	}
	if got.ObjectDeviceID != "dev_s" || len(got.Shadow) != 1 || got.Shadow[0].ServiceID != "Meter" || got.Shadow[0].Version != 1 ||
		got.Shadow[0].Desired.Properties["limit"] != 5.0 || len(got.Shadow[0].Desired.EventTime) != len("20250414T013000Z") ||
		got.Shadow[0].Reported.Properties["limit"] != 3.0 || got.Shadow[0].Reported.EventTime != "20250414T013000Z" {
		t.Fatalf("answer %s", m.Payload())
	}

	// No service named (an empty body too): every service; one with
	// desired values only has no reported section.
	c.pub(t, "$oc/devices/dev_s/sys/shadow/get/request_id=r2", 1, ``)
	m = c.next(t, 5*time.Second)
	got.Shadow = nil
	if err := json.Unmarshal(m.Payload(), &got); err != nil || len(got.Shadow) != 2 || got.Shadow[1].ServiceID != "Light" ||
		got.Shadow[1].Reported != nil || got.Shadow[1].Desired.Properties["on"] != true {
		t.Fatalf("answer %s (%v)", m.Payload(), err)
	}
}
