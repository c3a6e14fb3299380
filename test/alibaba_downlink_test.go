package test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// TestAliDownlinksNodeSDK: applications reach a device that speaks
// Alibaba's Alink through the unmodified Huawei Go SDK, and Alibaba's own
// Node device SDK (npm alibabacloud-iot-device-sdk 1.2.8, unmodified,
// test/node/alibaba-downlink.js) receives them through its onProps and
// onService handlers: UpdateProperties arrives as
// thing.service.property.set with the thing model's identifiers (module
// properties as "module:identifier") and the device's set_reply is the
// REST answer, its error code passed on; CreateCommand is an RRPC call
// of thing.service.{command_name}, answered by the SDK's synchronous
// reply, whose data is the command response's paras; CreateMessage with
// topic_full_name on the device's custom topic reaches its subscription.
// Offline, the calls are IOTDA.014016; a property query is refused as
// Alink devices answer none.
//
// Without node or the package, the test is skipped, except under CI,
// whose script installs both: there it fails.
func TestAliDownlinksNodeSDK(t *testing.T) {
	node, script := nodeSDKScript(t, "alibaba-downlink.js")
	g := StartGate(t, GateOptions{})
	g.aliProduct("a1NodeDown1", "prodSecretDown1", false, false, "")
	id := g.aliDevice("a1NodeDown1", "lamp-1", "devSecretDown0123", false)
	client := sdkClient(g)

	setReq := func(services ...map[string]any) *model.UpdatePropertiesRequest {
		var s any = services
		return &model.UpdatePropertiesRequest{DeviceId: id, Body: &model.DevicePropertiesRequest{Services: &s}}
	}
	str := func(s string) *string { return &s }
	var paras any = map[string]any{"delay": 3}
	callReq := &model.CreateCommandRequest{DeviceId: id, Body: &model.DeviceCommandRequest{
		ServiceId: str("default"), CommandName: str("reboot"), Paras: &paras}}

	// Offline: IoTDA's not-online refusal for both.
	var se *sdkerr.ServiceResponseError
	if _, err := client.UpdateProperties(setReq(map[string]any{"properties": map[string]any{"LightSwitch": 1}})); !errors.As(err, &se) ||
		se.StatusCode != http.StatusForbidden || se.ErrorCode != "IOTDA.014016" {
		t.Fatalf("offline property set: want 403 IOTDA.014016, got %v", err)
	}
	if _, err := client.CreateCommand(callReq); !errors.As(err, &se) || se.StatusCode != http.StatusForbidden || se.ErrorCode != "IOTDA.014016" {
		t.Fatalf("offline command: want 403 IOTDA.014016, got %v", err)
	}

	sdk := startNodeScript(t, g, node, script, "mqtt://"+g.MQTT, "a1NodeDown1", "lamp-1", "devSecretDown0123")
	next := sdk.next
	next("ready")
	waitOnline(t, g, id)

	// A property set: the SDK's onProps sees the params, its set_reply
	// (code 200) is the answer.
	set, err := client.UpdateProperties(setReq(
		map[string]any{"service_id": "default", "properties": map[string]any{"LightSwitch": 1}},
		map[string]any{"service_id": "lamp", "properties": map[string]any{"Brightness": 80}}))
	if err != nil || set.Response == nil {
		t.Fatalf("UpdateProperties: %v %+v", err, set)
	}
	if r := (*set.Response).(map[string]any); fmt.Sprint(r["result_code"]) != "0" {
		t.Fatalf("UpdateProperties response %v", r)
	}
	got := next("props")
	if got.Method != "thing.service.property.set" || fmt.Sprint(got.Params) != "map[LightSwitch:1 lamp:Brightness:80]" {
		t.Fatalf("the device received %+v", got)
	}

	// The device refuses one: its code and message are the answer.
	set, err = client.UpdateProperties(setReq(map[string]any{"properties": map[string]any{"Reject": true}}))
	if err != nil || set.Response == nil {
		t.Fatalf("UpdateProperties (refused): %v %+v", err, set)
	}
	if r := (*set.Response).(map[string]any); fmt.Sprint(r["result_code"]) != "9201" || r["result_desc"] != "property rejected" {
		t.Fatalf("refused set's response %v", r)
	}
	next("props")

	// A service call: onService('reboot') sees it, its synchronous reply's
	// data is the command response's paras.
	res, err := client.CreateCommand(callReq)
	if err != nil || res.Response == nil || res.CommandId == nil || *res.CommandId == "" {
		t.Fatalf("CreateCommand: %v %+v", err, res)
	}
	want := `{"paras":{"delay":3,"rebooted":true},"result_code":0}`
	if b, _ := json.Marshal(*res.Response); string(b) != want {
		t.Fatalf("CreateCommand response %s, want %s", b, want)
	}
	if got := next("service"); got.Method != "thing.service.reboot" || fmt.Sprint(got.Params) != "map[delay:3]" {
		t.Fatalf("the device received %+v", got)
	}

	// A message on the custom topic the SDK subscribed to.
	var text any = "lamp on"
	msg, err := client.CreateMessage(&model.CreateMessageRequest{DeviceId: id, Body: &model.DeviceMessageRequest{
		Message: &text, PayloadFormat: str("raw"), TopicFullName: str("/a1NodeDown1/lamp-1/user/get")}})
	if err != nil || msg.Result == nil || msg.Result.Status == nil || *msg.Result.Status != "DELIVERED" {
		t.Fatalf("CreateMessage: %v %+v", err, msg)
	}
	if got := next("message"); got.Topic != "/a1NodeDown1/lamp-1/user/get" || got.Payload != "lamp on" {
		t.Fatalf("the device received %+v", got)
	}

	// The IoTDA default topic is not one the device can subscribe to.
	if _, err := client.CreateMessage(&model.CreateMessageRequest{DeviceId: id, Body: &model.DeviceMessageRequest{Message: &text}}); !errors.As(err, &se) ||
		se.StatusCode != http.StatusBadRequest || se.ErrorCode != "IOTDA.014112" {
		t.Fatalf("message on the default topic: want 400 IOTDA.014112, got %v", err)
	}

	// What Alink cannot carry is refused, naming why.
	if _, err := client.ListProperties(&model.ListPropertiesRequest{DeviceId: id, ServiceId: "lamp"}); !errors.As(err, &se) ||
		se.StatusCode != http.StatusBadRequest || !strings.Contains(se.ErrorMessage, "Alibaba") {
		t.Fatalf("property query: want 400 naming the Alibaba dialect, got %v", err)
	}
	var none any = map[string]any{}
	if _, err := client.CreateCommand(&model.CreateCommandRequest{DeviceId: id, Body: &model.DeviceCommandRequest{Paras: &none}}); !errors.As(err, &se) ||
		se.StatusCode != http.StatusBadRequest || se.ErrorCode != "IOTDA.000006" || !strings.Contains(se.ErrorMessage, "command_name") {
		t.Fatalf("command without command_name: want 400 IOTDA.000006, got %v", err)
	}
}

// TestAliGatewayNodeSDK: the Node SDK as an Alibaba gateway
// (test/node/alibaba-gateway.js) attaches and logs in a sub-device, whose
// onProps and onService receive the Huawei Go SDK's property set and
// command through the gateway's connection; the gateway then reads its
// topology, removes the sub-device from it (which logs it out and clears
// its gateway_id) and reads it again.
func TestAliGatewayNodeSDK(t *testing.T) {
	node, script := nodeSDKScript(t, "alibaba-gateway.js")
	g := StartGate(t, GateOptions{})
	g.aliProduct("a1NodeGw001", "prodSecretGw001", false, false, "GATEWAY")
	g.aliProduct("a1NodeSub01", "prodSecretSub01", false, false, "")
	gw := g.aliDevice("a1NodeGw001", "gw-1", "devSecretGw00123", false)
	sub := g.aliDevice("a1NodeSub01", "sub-1", "devSecretSub0123", false)
	client := sdkClient(g)

	sdk := startNodeScript(t, g, node, script, "mqtt://"+g.MQTT, "a1NodeGw001", "gw-1", "devSecretGw00123",
		"a1NodeSub01", "sub-1", "devSecretSub0123")
	sdk.next("ready")
	waitOnline(t, g, sub)

	var services any = []map[string]any{{"properties": map[string]any{"Power": 1}}}
	set, err := client.UpdateProperties(&model.UpdatePropertiesRequest{DeviceId: sub, Body: &model.DevicePropertiesRequest{Services: &services}})
	if err != nil || set.Response == nil || fmt.Sprint((*set.Response).(map[string]any)["result_code"]) != "0" {
		t.Fatalf("UpdateProperties: %v %+v", err, set)
	}
	if got := sdk.next("props"); got.Method != "thing.service.property.set" || fmt.Sprint(got.Params) != "map[Power:1]" {
		t.Fatalf("the sub-device received %+v", got)
	}
	name := "reboot"
	var paras any = map[string]any{}
	res, err := client.CreateCommand(&model.CreateCommandRequest{DeviceId: sub, Body: &model.DeviceCommandRequest{CommandName: &name, Paras: &paras}})
	if err != nil || res.Response == nil {
		t.Fatalf("CreateCommand: %v %+v", err, res)
	}
	if b, _ := json.Marshal(*res.Response); string(b) != `{"paras":{"rebooted":true},"result_code":0}` {
		t.Fatalf("CreateCommand response %s", b)
	}
	sdk.next("service")

	sdk.send("topo")
	topo := sdk.next("topo")
	var before, removed, after struct {
		Code int             `json:"code"`
		Data json.RawMessage `json:"data"`
	}
	for raw, v := range map[string]any{string(topo.Before): &before, string(topo.Removed): &removed, string(topo.After): &after} {
		if err := json.Unmarshal([]byte(raw), v); err != nil {
			t.Fatalf("topology answer %s: %v", raw, err)
		}
	}
	one := `[{"productKey":"a1NodeSub01","deviceName":"sub-1"}]`
	if before.Code != 200 || string(before.Data) != one || removed.Code != 200 || string(removed.Data) != one ||
		after.Code != 200 || string(after.Data) != "[]" {
		t.Fatalf("topology: before %+v, removed %+v, after %+v", before, removed, after)
	}
	g.waitStatus(sub, "OFFLINE")
	if d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+sub), nil); d["gateway_id"] != sub {
		t.Fatalf("the removed sub-device: %v (its gateway was %s)", d, gw)
	}
}

// nodeSDKScript returns node and the path of a script in test/node that
// drives the Alibaba Node SDK, skipping the test without them (failing
// it under CI, whose script installs both).
func nodeSDKScript(t *testing.T, name string) (node, script string) {
	t.Helper()
	node = interopTool(t, "node", "apt-get install nodejs npm")
	script, err := filepath.Abs(filepath.Join("node", name))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "alibabacloud-iot-device-sdk", "package.json")); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("alibabacloud-iot-device-sdk is not installed (CI must run: npm ci --prefix test/node)")
		}
		t.Skip("alibabacloud-iot-device-sdk is not installed; run: npm ci --prefix test/node")
	}
	return node, script
}

// sdkEvent is a line a Node SDK script prints.
type sdkEvent struct {
	Event   string          `json:"event"`
	Method  string          `json:"method"`
	Params  map[string]any  `json:"params"`
	Topic   string          `json:"topic"`
	Payload string          `json:"payload"`
	Before  json.RawMessage `json:"before"`
	Removed json.RawMessage `json:"removed"`
	After   json.RawMessage `json:"after"`
}

// nodeScript is a running Node SDK script: its printed events, and its
// stdin for commands.
type nodeScript struct {
	t      *testing.T
	g      *Gate
	stdin  io.WriteCloser
	events chan sdkEvent
	stderr *strings.Builder
}

// startNodeScript runs a script until the test ends, when its stdin is
// closed and it must end its session and exit cleanly (the clean-up runs
// while the gate is still up).
func startNodeScript(t *testing.T, g *Gate, node, script string, args ...string) *nodeScript {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, node, append([]string{script}, args...)...)
	cmd.Dir, cmd.Env = filepath.Dir(script), nodeEnv()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	ns := &nodeScript{t: t, g: g, stdin: stdin, events: make(chan sdkEvent, 16), stderr: &strings.Builder{}}
	cmd.Stderr = ns.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		defer cancel()
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("node SDK: %v\nstderr: %s", err, ns.stderr.String())
		}
	})
	go func() {
		defer close(ns.events)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var e sdkEvent
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				e = sdkEvent{Event: "unparsed: " + sc.Text()}
			}
			ns.events <- e
		}
	}()
	return ns
}

// next returns the script's next event, which must be of kind want.
func (ns *nodeScript) next(want string) sdkEvent {
	ns.t.Helper()
	select {
	case e, ok := <-ns.events:
		if !ok || e.Event != want {
			ns.t.Fatalf("node SDK: got %+v (open %v), want a %s event\nstderr: %s\ngate logs:\n%s", e, ok, want, ns.stderr.String(), ns.g.Logs())
		}
		return e
	case <-time.After(60 * time.Second): // node loads the SDK slowly on a busy machine
		ns.t.Fatalf("node SDK: no %s event in 60 s\nstderr: %s\ngate logs:\n%s", want, ns.stderr.String(), ns.g.Logs())
	}
	return sdkEvent{}
}

// send writes a command line to the script.
func (ns *nodeScript) send(line string) {
	ns.t.Helper()
	if _, err := io.WriteString(ns.stdin, line+"\n"); err != nil {
		ns.t.Fatal(err)
	}
}
