package test

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// TestDesiredShadowWithHuaweiSDK: desired values written with the
// unmodified Huawei Go SDK while an MQTT device is offline reach it (a
// Paho client) as a properties set when it connects afterwards; its
// report of them empties the delta; a stale version is refused; the
// device reads its shadow on sys/shadow/get.
func TestDesiredShadowWithHuaweiSDK(t *testing.T) {
	g := StartGate(t, GateOptions{})
	client := sdkClient(g)
	d := createMQTTDevice(t, g, "shadowp", "n1", false)

	var desired any = map[string]any{"limit": 5, "mode": "eco"}
	v0 := int64(0)
	up, err := client.UpdateDeviceShadowDesiredData(&model.UpdateDeviceShadowDesiredDataRequest{DeviceId: d.id,
		Body: &model.UpdateDesireds{Shadow: &[]model.UpdateDesired{{ServiceId: "Meter", Desired: &desired, Version: &v0}}}})
	if err != nil || up.Shadow == nil || len(*up.Shadow) != 1 || *(*up.Shadow)[0].Version != 1 {
		t.Fatalf("UpdateDeviceShadowDesiredData: %v %+v", err, up)
	}
	// The version moved on: the same write again is refused.
	_, err = client.UpdateDeviceShadowDesiredData(&model.UpdateDeviceShadowDesiredDataRequest{DeviceId: d.id,
		Body: &model.UpdateDesireds{Shadow: &[]model.UpdateDesired{{ServiceId: "Meter", Desired: &desired, Version: &v0}}}})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusConflict || se.ErrorCode != "IOTDA.014211" {
		t.Fatalf("stale version: want 409 IOTDA.014211, got %v", err)
	}

	// The device connects afterwards and is sent the desired values.
	c, msgs := huaweiPaho(t, g, d)
	var set struct {
		ObjectDeviceID string `json:"object_device_id"`
		Services       []struct {
			ServiceID  string         `json:"service_id"`
			Properties map[string]any `json:"properties"`
		} `json:"services"`
	}
	select {
	case m := <-msgs:
		prefix := "$oc/devices/" + d.id + "/sys/properties/set/request_id="
		if !strings.HasPrefix(m.Topic(), prefix) || json.Unmarshal(m.Payload(), &set) != nil || set.ObjectDeviceID != d.id ||
			len(set.Services) != 1 || set.Services[0].ServiceID != "Meter" || set.Services[0].Properties["limit"] != 5.0 ||
			set.Services[0].Properties["mode"] != "eco" {
			t.Fatalf("on connect: %s %s", m.Topic(), m.Payload())
		}
		c.Publish("$oc/devices/"+d.id+"/sys/properties/set/response/request_id="+strings.TrimPrefix(m.Topic(), prefix),
			1, false, `{"result_code":0,"result_desc":"success"}`).Wait()
	case <-time.After(10 * time.Second):
		t.Fatalf("desired values not sent on connect; logs:\n%s", g.Logs())
	}
	// It applies them and reports: the delta is gone.
	c.Publish("$oc/devices/"+d.id+"/sys/properties/report", 1, false,
		`{"services":[{"service_id":"Meter","properties":{"limit":5,"mode":"eco","v":220}}]}`).Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sh := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+d.id+"/shadow"), nil)["shadow"].([]any)[0].(map[string]any)
		if sh["reported"] != nil && sh["delta"] == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("shadow after the report: %v", sh)
		}
		time.Sleep(50 * time.Millisecond)
	}
	show, err := client.ShowDeviceShadow(&model.ShowDeviceShadowRequest{DeviceId: d.id})
	if err != nil || len(*show.Shadow) != 1 {
		t.Fatalf("ShowDeviceShadow: %v %+v", err, show)
	}
	s := (*show.Shadow)[0]
	rep := (*s.Reported.Properties).(map[string]any)
	des := (*s.Desired.Properties).(map[string]any)
	if s.ServiceId != "Meter" || *s.Version != 1 || rep["v"] == nil || des["mode"] != "eco" || *s.Reported.EventTime == "" {
		t.Fatalf("ShowDeviceShadow: %+v reported %v desired %v", s, rep, des)
	}

	// The device asks for its shadow.
	c.Publish("$oc/devices/"+d.id+"/sys/shadow/get/request_id=sg1", 1, false, `{"object_device_id":"`+d.id+`"}`).Wait()
	select {
	case m := <-msgs:
		if m.Topic() != "$oc/devices/"+d.id+"/sys/shadow/get/response/request_id=sg1" ||
			!strings.Contains(string(m.Payload()), `"desired":{"properties":{"limit":5,"mode":"eco"}`) {
			t.Fatalf("shadow get: %s %s", m.Topic(), m.Payload())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shadow get not answered")
	}
}
