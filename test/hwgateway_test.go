package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// hwGateway is a Paho client connected as an IoTDA gateway, speaking the
// documented $sub_device_manager events itself (no device SDK).
type hwGateway struct {
	t     *testing.T
	id    string
	c     paho.Client
	msgs  <-chan paho.Message
	other []paho.Message // received while waiting for an event's answer
}

// event publishes one $sub_device_manager event and returns the paras of
// the answer, after checking its envelope (events/down, the response
// event type, the request's event_id).
func (gw *hwGateway) event(eventType, eventID string, paras any) map[string]any {
	gw.t.Helper()
	body, _ := json.Marshal(map[string]any{"object_device_id": gw.id, "services": []any{map[string]any{
		"service_id": "$sub_device_manager", "event_type": eventType, "event_time": time.Now().UTC().Format("20060102T150405Z"),
		"event_id": eventID, "paras": paras}}})
	want := map[string]string{"add_sub_device_request": "add_sub_device_response", "delete_sub_device_request": "delete_sub_device_response",
		"sub_device_update_status": "sub_device_update_status_response"}[eventType]
	gw.publish("$oc/devices/"+gw.id+"/sys/events/up", string(body))
	var m paho.Message
	for {
		select {
		case m = <-gw.msgs:
		case <-time.After(10 * time.Second):
			gw.t.Fatalf("no answer to %s", eventType)
		}
		if strings.HasSuffix(m.Topic(), "/sys/events/down") && strings.Contains(string(m.Payload()), `"`+want+`"`) {
			break
		}
		gw.other = append(gw.other, m) // a notification may come first
	}
	var ev struct {
		ObjectDeviceID string `json:"object_device_id"`
		Services       []struct {
			ServiceID string         `json:"service_id"`
			EventType string         `json:"event_type"`
			EventID   string         `json:"event_id"`
			Paras     map[string]any `json:"paras"`
		} `json:"services"`
	}
	if m.Topic() != "$oc/devices/"+gw.id+"/sys/events/down" || json.Unmarshal(m.Payload(), &ev) != nil || len(ev.Services) != 1 ||
		ev.ObjectDeviceID != gw.id || ev.Services[0].ServiceID != "$sub_device_manager" || ev.Services[0].EventType != want ||
		ev.Services[0].EventID != eventID {
		gw.t.Fatalf("answer to %s on %s: %s", eventType, m.Topic(), m.Payload())
	}
	return ev.Services[0].Paras
}

// notice reads the platform's next notification, which must be of
// eventType and name one device, and returns that device's DeviceInfo.
func (gw *hwGateway) notice(eventType string) map[string]any {
	gw.t.Helper()
	m := gw.next()
	var ev struct {
		Services []struct {
			ServiceID string `json:"service_id"`
			EventType string `json:"event_type"`
			Paras     struct {
				Devices []map[string]any `json:"devices"`
				Version int64            `json:"version"`
			} `json:"paras"`
		} `json:"services"`
	}
	if m.Topic() != "$oc/devices/"+gw.id+"/sys/events/down" || json.Unmarshal(m.Payload(), &ev) != nil || len(ev.Services) != 1 ||
		ev.Services[0].ServiceID != "$sub_device_manager" || ev.Services[0].EventType != eventType ||
		ev.Services[0].Paras.Version <= 0 || len(ev.Services[0].Paras.Devices) != 1 {
		gw.t.Fatalf("%s on %s: %s", eventType, m.Topic(), m.Payload())
	}
	return ev.Services[0].Paras.Devices[0]
}

func (gw *hwGateway) publish(topic, payload string) {
	gw.t.Helper()
	if tok := gw.c.Publish(topic, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		gw.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func (gw *hwGateway) next() paho.Message {
	gw.t.Helper()
	if len(gw.other) > 0 {
		m := gw.other[0]
		gw.other = gw.other[1:]
		return m
	}
	select {
	case m := <-gw.msgs:
		return m
	case <-time.After(10 * time.Second):
		gw.t.Fatal("the gateway received nothing")
		return nil
	}
}

// TestHuaweiGatewayE2E: a Paho client connected as an IoTDA gateway adds
// a sub-device with the documented events, brings it online (and gets
// the message held for it), reports its properties and a message for it,
// receives and answers the command an
// unmodified Huawei Go SDK sends the sub-device, and deletes it; the SDK
// sees the sub-device as IoTDA shows one (gateway_id, node_type, status,
// shadow, messages), and the gateway is notified of every addition and
// deletion (add_sub_device_notify, delete_sub_device_notify), its own and
// the SDK's, and its sync request lists its sub-devices. A sub-device of
// another gateway is refused (IOTDA.014031 to
// add it again, IOTDA.014000 otherwise) and left as it was.
func TestHuaweiGatewayE2E(t *testing.T) {
	g := StartGate(t, GateOptions{})
	client := sdkClient(g)
	g.aliProduct("hwgwprod", "prodSecretHwGw", false, false, "GATEWAY")
	g.CreateProduct("hwsubprod", "MQTT")
	secret, plain := "gatewaySecret01", false
	var gwIDs []string
	for _, node := range []string{"gw1", "gw2"} {
		cr, err := client.AddDevice(&model.AddDeviceRequest{Body: &model.AddDevice{NodeId: node, ProductId: "hwgwprod",
			AuthInfo: &model.AuthInfo{Secret: &secret, SecureAccess: &plain}}})
		if err != nil {
			t.Fatalf("AddDevice %s: %v", node, err)
		}
		gwIDs = append(gwIDs, *cr.DeviceId)
	}
	gwID := gwIDs[0]
	// gw2's sub-device, created over REST.
	other := "hwsubprod_theirs"
	if _, err := client.AddDevice(&model.AddDeviceRequest{Body: &model.AddDevice{NodeId: "theirs", ProductId: "hwsubprod",
		GatewayId: &gwIDs[1]}}); err != nil {
		t.Fatalf("AddDevice theirs: %v", err)
	}

	c, msgs := huaweiPaho(t, g, &mqttDevice{id: gwID, secret: secret, g: g})
	waitOnline(t, g, gwID)
	gw := &hwGateway{t: t, id: gwID, c: c, msgs: msgs}

	// Add: one sub-device added, one taken from another gateway refused.
	paras := gw.event("add_sub_device_request", "40cc9ab1-3579-488c-95c6-c18941c99eb4", map[string]any{"devices": []any{
		map[string]any{"node_id": "meter1", "product_id": "hwsubprod", "name": "Meter 1", "description": "first floor"},
		map[string]any{"node_id": "theirs2", "product_id": "hwsubprod", "device_id": other},
	}})
	ok, _ := paras["successful_devices"].([]any)
	failed, _ := paras["failed_devices"].([]any)
	if len(ok) != 1 || len(failed) != 1 {
		t.Fatalf("add answer %v", paras)
	}
	added := ok[0].(map[string]any)
	subID, _ := added["device_id"].(string)
	if subID != "hwsubprod_meter1" || added["parent_device_id"] != gwID || added["node_id"] != "meter1" || added["status"] != "INACTIVE" {
		t.Fatalf("added %v", added)
	}
	if f := failed[0].(map[string]any); f["node_id"] != "theirs2" || f["error_code"] != "IOTDA.014031" {
		t.Fatalf("refused add %v", f)
	}

	// The platform's notification of the addition follows (or precedes) it.
	if n := gw.notice("add_sub_device_notify"); n["device_id"] != subID || n["parent_device_id"] != gwID {
		t.Fatalf("add_sub_device_notify %v", n)
	}

	// The SDK sees a sub-device of the gateway.
	show, err := client.ShowDevice(&model.ShowDeviceRequest{DeviceId: subID})
	if err != nil || *show.GatewayId != gwID || *show.NodeType != "ENDPOINT" || *show.Status != "INACTIVE" ||
		*show.DeviceName != "Meter 1" || *show.Description != "first floor" {
		t.Fatalf("ShowDevice: %v %+v", err, show)
	}
	list, err := client.ListDevices(&model.ListDevicesRequest{GatewayId: &gwID})
	if err != nil || len(*list.Devices) != 1 || *(*list.Devices)[0].DeviceId != subID {
		t.Fatalf("ListDevices gateway_id=%s: %v %+v", gwID, err, list)
	}

	// A message sent while the sub-device is offline is held.
	held := g.MustDo(http.StatusCreated, "POST", g.P("/devices/"+subID+"/messages"),
		map[string]any{"message_id": "held-1", "name": "config", "message": map[string]any{"interval": 60}})
	if r := held["result"].(map[string]any); r["status"] != "PENDING" {
		t.Fatalf("message to an offline sub-device: %v", held)
	}

	// Status: ONLINE for its own; another gateway's is refused.
	paras = gw.event("sub_device_update_status", "status-1", map[string]any{"device_statuses": []any{
		map[string]string{"device_id": subID, "status": "ONLINE"}, map[string]string{"device_id": other, "status": "ONLINE"}}})
	if ok, failed := paras["successful_devices"].([]any), paras["failed_devices"].([]any); len(ok) != 1 || len(failed) != 1 ||
		failed[0].(map[string]any)["device_id"] != other || failed[0].(map[string]any)["error_code"] != "IOTDA.014000" {
		t.Fatalf("status answer %v", paras)
	}
	waitOnline(t, g, subID)
	if d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+other), nil); d["status"] == "ONLINE" {
		t.Fatal("a gateway brought another gateway's sub-device online")
	}
	// The held message goes out through the gateway, naming the sub-device.
	if m := gw.next(); m.Topic() != "$oc/devices/"+gwID+"/sys/messages/down" ||
		string(m.Payload()) != `{"object_device_id":"`+subID+`","name":"config","id":"held-1","content":{"interval":60}}` {
		t.Fatalf("held message on %s: %s", m.Topic(), m.Payload())
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.MustDo(http.StatusOK, "GET", g.P("/devices/"+subID+"/messages/held-1"), nil)["status"] != "DELIVERED" {
		if time.Now().After(deadline) {
			t.Fatal("the held message did not end DELIVERED")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// Properties and a message for the sub-device, through the gateway.
	gw.publish("$oc/devices/"+gwID+"/sys/gateway/sub_devices/properties/report", `{"devices":[{"device_id":"`+subID+
		`","services":[{"service_id":"Meter","properties":{"voltage":231.5},"event_time":"20251212T121212Z"}]}]}`)
	deadline = time.Now().Add(10 * time.Second)
	for {
		sh, err := client.ShowDeviceShadow(&model.ShowDeviceShadowRequest{DeviceId: subID})
		if err == nil && sh.Shadow != nil && len(*sh.Shadow) == 1 && (*sh.Shadow)[0].Reported != nil {
			rep := (*(*sh.Shadow)[0].Reported.Properties).(map[string]any)
			if (*sh.Shadow)[0].ServiceId != "Meter" || fmt.Sprint(rep["voltage"]) != "231.5" {
				t.Fatalf("ShowDeviceShadow: %+v", (*sh.Shadow)[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ShowDeviceShadow after the report: %v %+v", err, sh)
		}
		time.Sleep(50 * time.Millisecond)
	}
	gw.publish("$oc/devices/"+gwID+"/sys/messages/up", `{"object_device_id":"`+subID+`","name":"alarm","id":"a1","content":"door open"}`)
	deadline = time.Now().Add(10 * time.Second)
	for {
		ms := g.messages(subID)
		if len(ms) == 1 && strings.Contains(ms[0], `"content":"door open"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sub-device's messages: %q", ms)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A command the SDK sends the sub-device reaches the gateway's topic.
	if len(gw.other) != 0 {
		t.Fatalf("the gateway received %s: %s", gw.other[0].Topic(), gw.other[0].Payload())
	}
	go func() {
		m := <-msgs
		var req struct {
			ObjectDeviceID string         `json:"object_device_id"`
			CommandName    string         `json:"command_name"`
			Paras          map[string]any `json:"paras"`
		}
		reqID, found := strings.CutPrefix(m.Topic(), "$oc/devices/"+gwID+"/sys/commands/request_id=")
		answer := `{"result_code":1,"response_name":"wrong"}`
		if found && json.Unmarshal(m.Payload(), &req) == nil && req.ObjectDeviceID == subID && req.CommandName == "calibrate" {
			answer = `{"result_code":0,"response_name":"calibrated","paras":{"offset":` + jsonNumber(req.Paras["offset"]) + `}}`
		}
		c.Publish("$oc/devices/"+gwID+"/sys/commands/response/request_id="+reqID, 1, false, answer)
	}()
	var cmdParas any = map[string]any{"offset": 3}
	serviceID, name := "Meter", "calibrate"
	cr, err := client.CreateCommand(&model.CreateCommandRequest{DeviceId: subID,
		Body: &model.DeviceCommandRequest{ServiceId: &serviceID, CommandName: &name, Paras: &cmdParas}})
	if err != nil || cr.Response == nil {
		t.Fatalf("CreateCommand: %v %+v", err, cr)
	}
	if b, _ := json.Marshal(*cr.Response); string(b) != `{"paras":{"offset":3},"response_name":"calibrated","result_code":0}` {
		t.Fatalf("command response %s", b)
	}

	// One the SDK adds under the gateway is notified too.
	if _, err := client.AddDevice(&model.AddDeviceRequest{Body: &model.AddDevice{NodeId: "meter2", ProductId: "hwsubprod",
		GatewayId: &gwID}}); err != nil {
		t.Fatalf("AddDevice meter2: %v", err)
	}
	if n := gw.notice("add_sub_device_notify"); n["device_id"] != "hwsubprod_meter2" || n["status"] != "INACTIVE" {
		t.Fatalf("add_sub_device_notify %v", n)
	}

	// Delete: its own goes, another gateway's stays.
	paras = gw.event("delete_sub_device_request", "delete-1", map[string]any{"devices": []string{subID, other}})
	if ok, failed := paras["successful_devices"].([]any), paras["failed_devices"].([]any); len(ok) != 1 || ok[0] != subID ||
		len(failed) != 1 || failed[0].(map[string]any)["error_code"] != "IOTDA.014000" {
		t.Fatalf("delete answer %v", paras)
	}
	if n := gw.notice("delete_sub_device_notify"); n["device_id"] != subID || n["node_id"] != "meter1" {
		t.Fatalf("delete_sub_device_notify %v", n)
	}
	_, err = client.ShowDevice(&model.ShowDeviceRequest{DeviceId: subID})
	var se *sdkerr.ServiceResponseError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || se.ErrorCode != "IOTDA.014000" {
		t.Fatalf("ShowDevice of the deleted sub-device: %v", err)
	}
	if _, err := client.ShowDevice(&model.ShowDeviceRequest{DeviceId: other}); err != nil {
		t.Fatalf("another gateway's sub-device: %v", err)
	}

	// A sync lists what is left: the sub-device the SDK added.
	gw.publish("$oc/devices/"+gwID+"/sys/events/up",
		`{"services":[{"service_id":"$sub_device_manager","event_type":"sub_device_sync_request","paras":{"version":0}}]}`)
	if n := gw.notice("add_sub_device_notify"); n["device_id"] != "hwsubprod_meter2" || n["parent_device_id"] != gwID {
		t.Fatalf("sync %v", n)
	}
}

func jsonNumber(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
