package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// hwGatewayEnv: gateways gw and gw2 of the GATEWAY product hwgwp (IoTDA
// dialect), gw2 with the sub-device other; the endpoint product of env
// for sub-devices; a product of another project.
type hwGatewayEnv struct {
	*env
	gw *client
}

func newHwGatewayEnv(t *testing.T) *hwGatewayEnv {
	e := newEnv(t)
	ctx := context.Background()
	for _, p := range []registry.Product{
		{ProjectID: testProject, ProductID: "hwgwp", NodeType: registry.NodeGateway},
		{ProjectID: "elsewhere", ProductID: "foreign"},
	} {
		p.Name, p.DeviceType, p.ProtocolType = "P", "Gateway", "MQTT"
		if _, err := e.reg.CreateProduct(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"gw", "gw2"} {
		if _, err := e.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: testProject, ProductID: "hwgwp", NodeID: id,
			DeviceID: id, Auth: registry.AuthInfo{Secret: "gatewaySecret1"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.reg.AddSubDevice(ctx, "gw2", registry.NewSubDevice{NodeID: "other", ProductID: testProduct}); err != nil {
		t.Fatal(err)
	}
	g := &hwGatewayEnv{env: e, gw: e.mustConnect(dial{id: "gw", secret: "gatewaySecret1"})}
	e.ready("gw")
	return g
}

const otherSub = testProduct + "_other" // gw2's sub-device

// event publishes a $sub_device_manager event and returns the response
// event's service.
func (g *hwGatewayEnv) event(t *testing.T, eventType, eventID string, paras any) (svc struct {
	ServiceID string          `json:"service_id"`
	EventType string          `json:"event_type"`
	EventTime string          `json:"event_time"`
	EventID   string          `json:"event_id"`
	Paras     json.RawMessage `json:"paras"`
}) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"object_device_id": "gw", "services": []any{map[string]any{
		"service_id": "$sub_device_manager", "event_type": eventType, "event_time": "20251212T121212Z",
		"event_id": eventID, "paras": paras}}})
	g.gw.pub(t, "$oc/devices/gw/sys/events/up", 1, string(body))
	m := g.gw.next(t, 5*time.Second)
	if m.Topic() != "$oc/devices/gw/sys/events/down" {
		t.Fatalf("answer on %s: %s", m.Topic(), m.Payload())
	}
	var ev struct {
		ObjectDeviceID string `json:"object_device_id"`
		Services       []struct {
			ServiceID string          `json:"service_id"`
			EventType string          `json:"event_type"`
			EventTime string          `json:"event_time"`
			EventID   string          `json:"event_id"`
			Paras     json.RawMessage `json:"paras"`
		} `json:"services"`
	}
	if err := json.Unmarshal(m.Payload(), &ev); err != nil || ev.ObjectDeviceID != "gw" || len(ev.Services) != 1 {
		t.Fatalf("answer %s: %v", m.Payload(), err)
	}
	svc = ev.Services[0]
	if svc.ServiceID != "$sub_device_manager" {
		t.Fatalf("answer %s", m.Payload())
	}
	if _, err := time.Parse(eventTimeLayout, svc.EventTime); err != nil {
		t.Fatalf("answer's event_time %q", svc.EventTime)
	}
	if eventID != "" && svc.EventID != eventID || len(svc.EventID) != 36 {
		t.Fatalf("answer's event_id %q, request's %q", svc.EventID, eventID)
	}
	return svc
}

// failures decodes failed_devices as "id code" strings.
func failures(t *testing.T, paras json.RawMessage) (ok json.RawMessage, failed []string) {
	t.Helper()
	var p struct {
		Successful json.RawMessage `json:"successful_devices"`
		Failed     []hwFailure     `json:"failed_devices"`
	}
	if err := json.Unmarshal(paras, &p); err != nil || p.Successful == nil || p.Failed == nil {
		t.Fatalf("paras %s: %v", paras, err)
	}
	for _, f := range p.Failed {
		id := f.DeviceID
		if id == "" {
			id = f.ProductID + "/" + f.NodeID
		}
		if f.ErrorMsg == "" {
			t.Errorf("failure of %s has no error_msg", id)
		}
		failed = append(failed, id+" "+f.ErrorCode)
	}
	return p.Successful, failed
}

func TestHuaweiGatewayAddAndDelete(t *testing.T) {
	g := newHwGatewayEnv(t)
	ctx := context.Background()
	svc := g.event(t, "add_sub_device_request", "40cc9ab1-3579-488c-95c6-c18941c99eb4", map[string]any{"devices": []any{
		map[string]any{"node_id": "s1", "product_id": testProduct, "name": "first", "extension_info": map[string]any{"room": "a"}},
		map[string]any{"node_id": "s2", "product_id": testProduct, "device_id": "chosen-id", "parent_device_id": "gw"},
		map[string]any{"node_id": "s3", "product_id": "foreign"},
		map[string]any{"node_id": "s4", "product_id": testProduct, "device_id": otherSub},
		map[string]any{"node_id": "s5", "product_id": testProduct, "parent_device_id": "gw2"},
		map[string]any{"product_id": testProduct},
	}})
	if svc.EventType != "add_sub_device_response" {
		t.Fatalf("event_type %s", svc.EventType)
	}
	okRaw, failed := failures(t, svc.Paras)
	var added []hwSubDevice
	if err := json.Unmarshal(okRaw, &added); err != nil || len(added) != 2 {
		t.Fatalf("successful_devices %s", okRaw)
	}
	if a := added[0]; a.DeviceID != testProduct+"_s1" || a.ParentDeviceID != "gw" || a.NodeID != "s1" || a.Name != "first" ||
		a.ProductID != testProduct || a.Status != "INACTIVE" || string(a.ExtensionInfo) != `{"room":"a"}` {
		t.Fatalf("added %+v", a)
	}
	if added[1].DeviceID != "chosen-id" {
		t.Fatalf("added %+v", added[1])
	}
	want := []string{"foreign/s3 IOTDA.013000", testProduct + "/s4 IOTDA.014031", testProduct + "/s5 IOTDA.000006", testProduct + "/ IOTDA.000006"}
	if strings.Join(failed, ",") != strings.Join(want, ",") {
		t.Fatalf("failed_devices %v, want %v", failed, want)
	}
	for _, id := range []string{testProduct + "_s1", "chosen-id"} {
		if d, err := g.reg.Device(ctx, id); err != nil || d.GatewayID != "gw" || d.ProjectID != testProject {
			t.Fatalf("sub-device %s: %+v %v", id, d, err)
		}
	}
	if d, _ := g.reg.Device(ctx, otherSub); d.GatewayID != "gw2" {
		t.Fatal("a refused add took another gateway's sub-device")
	}

	// Delete: its own, not gw2's, not a directly connected device.
	svc = g.event(t, "delete_sub_device_request", "", map[string]any{"devices": []string{"chosen-id", otherSub, "gw2", "nothing"}})
	if svc.EventType != "delete_sub_device_response" {
		t.Fatalf("event_type %s", svc.EventType)
	}
	okRaw, failed = failures(t, svc.Paras)
	if string(okRaw) != `["chosen-id"]` || strings.Join(failed, ",") != otherSub+" IOTDA.014000,gw2 IOTDA.014000,nothing IOTDA.014000" {
		t.Fatalf("delete answer %s %v", okRaw, failed)
	}
	if _, err := g.reg.Device(ctx, "chosen-id"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("deleted sub-device: %v", err)
	}
	for _, id := range []string{otherSub, "gw2"} {
		if _, err := g.reg.Device(ctx, id); err != nil {
			t.Fatalf("%s deleted by a gateway it is not a sub-device of: %v", id, err)
		}
	}
	// Events of other services are not the gateway hook's.
	g.gw.pub(t, "$oc/devices/gw/sys/events/up", 1, `{"services":[{"service_id":"$ota","event_type":"version_report","paras":{}}]}`)
	g.gw.none(t, 200*time.Millisecond)
}

// TestHuaweiGatewayStatusPropertiesCommands: a sub-device the gateway
// reports ONLINE receives commands through the gateway's topics; its
// batch-reported properties land in its own shadow; it goes OFFLINE when
// the gateway says so or disconnects.
func TestHuaweiGatewayStatusPropertiesCommands(t *testing.T) {
	g := newHwGatewayEnv(t)
	ctx := context.Background()
	sub, err := g.reg.AddSubDevice(ctx, "gw", registry.NewSubDevice{NodeID: "s1", ProductID: testProduct})
	if err != nil {
		t.Fatal(err)
	}
	frozen, err := g.reg.AddSubDevice(ctx, "gw", registry.NewSubDevice{NodeID: "cold", ProductID: testProduct})
	if err != nil {
		t.Fatal(err)
	}
	if err := g.reg.SetFrozen(ctx, testProject, frozen.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	svc := g.event(t, "sub_device_update_status", "", map[string]any{"device_statuses": []any{
		map[string]string{"device_id": sub.DeviceID, "status": "ONLINE"},
		map[string]string{"device_id": otherSub, "status": "ONLINE"},
		map[string]string{"device_id": sub.DeviceID, "status": "SLEEPING"},
		map[string]string{"device_id": frozen.DeviceID, "status": "ONLINE"},
	}})
	if svc.EventType != "sub_device_update_status_response" {
		t.Fatalf("event_type %s", svc.EventType)
	}
	okRaw, failed := failures(t, svc.Paras)
	if string(okRaw) != `[{"device_id":"`+sub.DeviceID+`","status":"ONLINE"}]` ||
		strings.Join(failed, ",") != otherSub+" IOTDA.014000,"+sub.DeviceID+" IOTDA.000006,"+frozen.DeviceID+" IOTDA.001002" {
		t.Fatalf("status answer %s %v", okRaw, failed)
	}
	g.waitStatus(sub.DeviceID, registry.StatusOnline)
	if g.status(otherSub) == registry.StatusOnline {
		t.Fatal("a gateway brought another gateway's sub-device online")
	}

	// Properties of its sub-devices, in both event_time formats; a report
	// naming another gateway's sub-device is refused whole.
	g.gw.pub(t, "$oc/devices/gw/sys/gateway/sub_devices/properties/report", 1, `{"devices":[{"device_id":"`+sub.DeviceID+
		`","services":[{"service_id":"Meter","properties":{"voltage":220},"event_time":"2025-08-12T12:12:12.333Z"}]}]}`)
	eventually(t, func() bool {
		sh, err := g.reg.ShadowOf(ctx, sub.DeviceID)
		return err == nil && len(sh.Services) == 1 && string(sh.Services[0].Properties["voltage"]) == "220"
	}, "the sub-device's shadow")
	g.gw.pub(t, "$oc/devices/gw/sys/gateway/sub_devices/properties/report", 1, `{"devices":[{"device_id":"`+sub.DeviceID+
		`","services":[{"service_id":"Meter","properties":{"voltage":1}}]},{"device_id":"`+otherSub+
		`","services":[{"service_id":"Meter","properties":{"voltage":1}}]}]}`)
	eventually(t, func() bool { return g.srv.Stats().RejectedUplinks == 1 }, "the mixed report rejected")
	if sh, _ := g.reg.ShadowOf(ctx, sub.DeviceID); string(sh.Services[0].Properties["voltage"]) != "220" {
		t.Fatalf("a refused report was written in part: %s", sh.Services[0].Properties["voltage"])
	}
	if sh, _ := g.reg.ShadowOf(ctx, otherSub); len(sh.Services) != 0 {
		t.Fatal("a gateway wrote another gateway's sub-device's shadow")
	}

	// A command to the sub-device reaches the gateway's topic.
	type result struct {
		body json.RawMessage
		err  error
	}
	done := make(chan result, 1)
	go func() {
		b, err := g.srv.SendCommand(ctx, sub, registry.Command{CommandID: "cmd-1", ServiceID: "Meter", CommandName: "reset",
			Paras: json.RawMessage(`{"level":2}`)})
		done <- result{b, err}
	}()
	m := g.gw.next(t, 5*time.Second)
	if m.Topic() != "$oc/devices/gw/sys/commands/request_id=cmd-1" ||
		string(m.Payload()) != `{"object_device_id":"`+sub.DeviceID+`","service_id":"Meter","command_name":"reset","paras":{"level":2}}` {
		t.Fatalf("command on %s: %s", m.Topic(), m.Payload())
	}
	g.gw.pub(t, "$oc/devices/gw/sys/commands/response/request_id=cmd-1", 1, `{"result_code":0,"response_name":"reset"}`)
	if r := <-done; r.err != nil || string(r.body) != `{"result_code":0,"response_name":"reset"}` {
		t.Fatalf("command result %s %v", r.body, r.err)
	}

	// OFFLINE: no more commands for it.
	g.event(t, "sub_device_update_status", "", map[string]any{"device_statuses": []any{
		map[string]string{"device_id": sub.DeviceID, "status": "OFFLINE"}}})
	g.waitStatus(sub.DeviceID, registry.StatusOffline)
	if _, err := g.srv.SendCommand(ctx, sub, registry.Command{CommandID: "cmd-2"}); !errors.Is(err, registry.ErrNotConnected) {
		t.Fatalf("command to an OFFLINE sub-device: %v", err)
	}

	// ONLINE again, then the gateway's connection ends: so does its session.
	g.event(t, "sub_device_update_status", "", map[string]any{"device_statuses": []any{
		map[string]string{"device_id": sub.DeviceID, "status": "ONLINE"}}})
	g.waitStatus(sub.DeviceID, registry.StatusOnline)
	g.gw.Disconnect(0)
	g.waitStatus(sub.DeviceID, registry.StatusOffline)
}

// TestHuaweiGatewaySubDeviceDeletedWhileOnline: deleting an ONLINE
// sub-device ends its session through the gateway.
func TestHuaweiGatewaySubDeviceDeletedWhileOnline(t *testing.T) {
	g := newHwGatewayEnv(t)
	ctx := context.Background()
	sub, err := g.reg.AddSubDevice(ctx, "gw", registry.NewSubDevice{NodeID: "s1", ProductID: testProduct})
	if err != nil {
		t.Fatal(err)
	}
	g.event(t, "sub_device_update_status", "", map[string]any{"device_statuses": []any{
		map[string]string{"device_id": sub.DeviceID, "status": "ONLINE"}}})
	g.waitStatus(sub.DeviceID, registry.StatusOnline)
	if err := g.reg.DeleteDevice(ctx, testProject, sub.DeviceID); err != nil {
		t.Fatal(err)
	}
	eventually(t, func() bool { _, ok := g.srv.conns.gatewayOf(sub.DeviceID); return !ok }, "the session ended")
	if g.srv.carrier(sub.DeviceID) != sub.DeviceID {
		t.Fatal("a deleted sub-device still has a carrier")
	}
}

// TestHuaweiGatewaySubDeviceMessages: a message whose object_device_id
// names a sub-device is the sub-device's; one naming another gateway's
// sub-device is refused; other messages stay the gateway's.
func TestHuaweiGatewaySubDeviceMessages(t *testing.T) {
	g := newHwGatewayEnv(t)
	ctx := context.Background()
	sub, err := g.reg.AddSubDevice(ctx, "gw", registry.NewSubDevice{NodeID: "s1", ProductID: testProduct})
	if err != nil {
		t.Fatal(err)
	}
	const topic = "$oc/devices/gw/sys/messages/up"
	forSub := `{"object_device_id":"` + sub.DeviceID + `","name":"n","id":"m1","content":"hello"}`
	g.gw.pub(t, topic, 1, forSub)
	g.gw.pub(t, topic, 1, `{"object_device_id":"`+otherSub+`","content":"not yours"}`)
	g.gw.pub(t, topic, 1, `{"object_device_id":"gw","content":"own"}`)
	g.gw.pub(t, topic, 1, `plain "object_device_id" text`)
	messages := func(id string) []string {
		ms, err := g.reg.Messages(ctx, testProject, id, 10)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range ms {
			out = append(out, string(m.Payload))
		}
		return out
	}
	eventually(t, func() bool { return len(messages("gw")) == 2 }, "the gateway's own messages")
	if got := messages(sub.DeviceID); len(got) != 1 || got[0] != forSub {
		t.Fatalf("the sub-device's messages: %q", got)
	}
	if got := messages(otherSub); len(got) != 0 {
		t.Fatalf("a gateway wrote another gateway's sub-device's messages: %q", got)
	}
	if n := g.srv.Stats().RejectedUplinks; n != 1 {
		t.Fatalf("rejected uplinks %d, want 1", n)
	}
}

// TestHuaweiGatewayNotified: a gateway is told on sys/events/down of the
// sub-devices created with its gateway_id and of their deletion.
func TestHuaweiGatewayNotified(t *testing.T) {
	g := newHwGatewayEnv(t)
	if err := g.reg.Router().Register(registry.Adapter{Protocol: registry.ProtocolMQTT, SubDevices: g.srv}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := g.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: testProject, ProductID: testProduct, NodeID: "rest1",
		GatewayID: "gw", DeviceName: "From REST", ExtensionInfo: json.RawMessage(`{"k":"v"}`)}); err != nil {
		t.Fatal(err)
	}
	type notice struct {
		ObjectDeviceID string `json:"object_device_id"`
		Services       []struct {
			ServiceID string `json:"service_id"`
			EventType string `json:"event_type"`
			EventTime string `json:"event_time"`
			Paras     struct {
				Devices []map[string]any `json:"devices"`
				Version int64            `json:"version"`
			} `json:"paras"`
		} `json:"services"`
	}
	read := func(eventType string) map[string]any {
		t.Helper()
		m := g.gw.next(t, 5*time.Second)
		var n notice
		if m.Topic() != "$oc/devices/gw/sys/events/down" || json.Unmarshal(m.Payload(), &n) != nil || n.ObjectDeviceID != "gw" ||
			len(n.Services) != 1 || n.Services[0].ServiceID != "$sub_device_manager" || n.Services[0].EventType != eventType ||
			n.Services[0].Paras.Version <= 0 || len(n.Services[0].Paras.Devices) != 1 {
			t.Fatalf("notice on %s: %s", m.Topic(), m.Payload())
		}
		return n.Services[0].Paras.Devices[0]
	}
	d := read("add_sub_device_notify")
	if b, _ := json.Marshal(d); string(b) != `{"device_id":"prod1_rest1","extension_info":{"k":"v"},"name":"From REST","node_id":"rest1",`+
		`"parent_device_id":"gw","product_id":"prod1","status":"INACTIVE"}` {
		t.Fatalf("added %s", b)
	}
	if err := g.reg.DeleteDevice(ctx, testProject, "prod1_rest1"); err != nil {
		t.Fatal(err)
	}
	d = read("delete_sub_device_notify")
	if b, _ := json.Marshal(d); string(b) != `{"device_id":"prod1_rest1","node_id":"rest1","parent_device_id":"gw"}` {
		t.Fatalf("deleted %s", b)
	}
	// gw2 is not connected; gw is not told of its sub-devices.
	if _, err := g.reg.CreateDevice(ctx, registry.NewDevice{ProjectID: testProject, ProductID: testProduct, NodeID: "rest2",
		GatewayID: "gw2"}); err != nil {
		t.Fatal(err)
	}
	g.gw.none(t, 200*time.Millisecond)
}

// TestHuaweiGatewaySync: sub_device_sync_request is answered with the
// gateway's current sub-devices, 100 to an add_sub_device_notify, and
// with one empty notification when it has none.
func TestHuaweiGatewaySync(t *testing.T) {
	g := newHwGatewayEnv(t)
	ctx := context.Background()
	sync := func() [][]map[string]any {
		t.Helper()
		g.gw.pub(t, "$oc/devices/gw/sys/events/up", 1,
			`{"services":[{"service_id":"$sub_device_manager","event_type":"sub_device_sync_request","paras":{"version":7}}]}`)
		var out [][]map[string]any
		for {
			select {
			case m := <-g.gw.msgs:
				var n struct {
					Services []struct {
						EventType string `json:"event_type"`
						Paras     struct {
							Devices []map[string]any `json:"devices"`
							Version int64            `json:"version"`
						} `json:"paras"`
					} `json:"services"`
				}
				if m.Topic() != "$oc/devices/gw/sys/events/down" || json.Unmarshal(m.Payload(), &n) != nil || len(n.Services) != 1 ||
					n.Services[0].EventType != "add_sub_device_notify" || n.Services[0].Paras.Version <= 0 {
					t.Fatalf("sync answer on %s: %.300s", m.Topic(), m.Payload())
				}
				out = append(out, n.Services[0].Paras.Devices)
			case <-time.After(300 * time.Millisecond):
				return out
			}
		}
	}
	if got := sync(); len(got) != 1 || len(got[0]) != 0 {
		t.Fatalf("sync with no sub-devices: %v", got)
	}
	for i := range 101 {
		if _, err := g.reg.AddSubDevice(ctx, "gw", registry.NewSubDevice{NodeID: fmt.Sprintf("s%03d", i),
			ProductID: testProduct}); err != nil {
			t.Fatal(err)
		}
	}
	got := sync()
	// The test client hands messages over concurrently: in any order.
	if len(got) != 2 || len(got[0])+len(got[1]) != 101 || max(len(got[0]), len(got[1])) != 100 {
		t.Fatalf("sync of 101 sub-devices came in %d events: %d, %d", len(got), len(got[0]), len(got[len(got)-1]))
	}
	seen := map[any]bool{}
	for _, part := range got {
		for _, d := range part {
			if d["parent_device_id"] != "gw" || d["product_id"] != testProduct || d["status"] != "INACTIVE" {
				t.Fatalf("synchronised %v", d)
			}
			seen[d["device_id"]] = true
		}
	}
	if len(seen) != 101 || seen[otherSub] {
		t.Fatalf("%d distinct sub-devices synchronised (gw2's among them: %v)", len(seen), seen[otherSub])
	}
}
