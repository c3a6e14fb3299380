package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	iotda "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// sdkClient is the unmodified Huawei Go SDK's IoTDA client for g.
func sdkClient(g *Gate) *iotda.IoTDAClient {
	cred := basic.NewCredentialsBuilder().WithAk(g.AK).WithSk(g.SK).WithProjectId(g.Project).Build()
	return iotda.NewIoTDAClient(iotda.IoTDAClientBuilder().WithEndpoint(g.API).WithCredential(cred).
		WithHttpConfig(g.sdkHTTPConfig(nil)).Build())
}

// answerProperties has a Paho device answer every properties request it
// receives, as the Huawei device SDKs do: a get with the service's
// values, a set with result_code 0 after applying it to values. Other
// publishes go to the returned channel.
func answerProperties(t *testing.T, c paho.Client, msgs <-chan paho.Message, id string, values map[string]any) <-chan paho.Message {
	t.Helper()
	others := make(chan paho.Message, 16)
	prefix := "$oc/devices/" + id + "/sys/properties/"
	go func() {
		for m := range msgs {
			rest, ok := strings.CutPrefix(m.Topic(), prefix)
			if !ok {
				others <- m
				continue
			}
			op, reqID, _ := strings.Cut(rest, "/request_id=")
			var answer any
			switch op {
			case "get":
				var req struct {
					ObjectDeviceID string `json:"object_device_id"`
					ServiceID      string `json:"service_id"`
				}
				if json.Unmarshal(m.Payload(), &req) != nil || req.ObjectDeviceID != id {
					answer = map[string]any{"bad_request": string(m.Payload())}
					break
				}
				answer = map[string]any{"services": []any{map[string]any{"service_id": req.ServiceID, "properties": values}}}
			case "set":
				var req struct {
					Services []struct {
						Properties map[string]any `json:"properties"`
					} `json:"services"`
				}
				if json.Unmarshal(m.Payload(), &req) != nil {
					answer = map[string]any{"result_code": 1, "result_desc": "bad request"}
					break
				}
				for _, s := range req.Services {
					for k, v := range s.Properties {
						values[k] = v
					}
				}
				answer = map[string]any{"result_code": 0, "result_desc": "success"}
			}
			b, _ := json.Marshal(answer)
			c.Publish(prefix+op+"/response/request_id="+reqID, 1, false, b)
		}
	}()
	return others
}

// TestPropertiesWithHuaweiSDK: the unmodified Huawei Go SDK reads and
// writes a live MQTT device's properties (a Paho client answering on the
// response topics); an offline device is IOTDA.014016, an NB-IoT one
// refused as IoTDA refuses synchronous requests to it.
func TestPropertiesWithHuaweiSDK(t *testing.T) {
	g := StartGate(t, GateOptions{})
	client := sdkClient(g)
	d := createMQTTDevice(t, g, "propsp", "n1", false)

	// Offline first.
	_, err := client.ListProperties(&model.ListPropertiesRequest{DeviceId: d.id, ServiceId: "Meter"})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || se.ErrorCode != "IOTDA.014016" {
		t.Fatalf("offline device: want 403 IOTDA.014016, got %v", err)
	}

	c, msgs := huaweiPaho(t, g, d)
	waitOnline(t, g, d.id)
	answerProperties(t, c, msgs, d.id, map[string]any{"voltage": 220.0})

	got, err := client.ListProperties(&model.ListPropertiesRequest{DeviceId: d.id, ServiceId: "Meter"})
	if err != nil || got.RequestId == nil || *got.RequestId == "" || got.Response == nil {
		t.Fatalf("ListProperties: %v %+v", err, got)
	}
	want := `{"services":[{"properties":{"voltage":220},"service_id":"Meter"}]}`
	if b, _ := json.Marshal(*got.Response); string(b) != want {
		t.Fatalf("ListProperties response %s, want %s", b, want)
	}

	var services any = []map[string]any{{"service_id": "Meter", "properties": map[string]any{"voltage": 230}}}
	set, err := client.UpdateProperties(&model.UpdatePropertiesRequest{DeviceId: d.id,
		Body: &model.DevicePropertiesRequest{Services: &services}})
	if err != nil || set.Response == nil {
		t.Fatalf("UpdateProperties: %v %+v", err, set)
	}
	if r := (*set.Response).(map[string]any); fmt.Sprint(r["result_code"]) != "0" {
		t.Fatalf("UpdateProperties response %v", r)
	}
	// The device applied it: a new get reads it back.
	got, err = client.ListProperties(&model.ListPropertiesRequest{DeviceId: d.id, ServiceId: "Meter"})
	if b, _ := json.Marshal(*got.Response); err != nil || !strings.Contains(string(b), `"voltage":230`) {
		t.Fatalf("after the set: %s %v", b, err)
	}

	g.CreateProduct("propsnb", "CoAP")
	nb := g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": "imei-props-1", "product_id": "propsnb"})["device_id"].(string)
	_, err = client.UpdateProperties(&model.UpdatePropertiesRequest{DeviceId: nb, Body: &model.DevicePropertiesRequest{Services: &services}})
	if !errors.As(err, &se) || se.StatusCode != http.StatusBadRequest || se.ErrorCode != "IOTDA.000006" ||
		!strings.Contains(se.ErrorMessage, "for MQTT devices only") {
		t.Fatalf("NB-IoT device: want 400 IOTDA.000006, got %v", err)
	}
}
