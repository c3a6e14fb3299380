package test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/auth/basic"
	iotda "github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/services/iotda/v5/model"
)

// huaweiPaho connects a Go Paho client as the device in Huawei's CONNECT
// format (secret, HMAC-SHA256 password). Every PUBLISH it receives goes to
// the returned channel, in order, subscribed or not: IoTDA delivers on
// sys/ topics without a subscription.
func huaweiPaho(t *testing.T, g *Gate, d *mqttDevice) (paho.Client, <-chan paho.Message) {
	t.Helper()
	ts := time.Now().UTC().Format("2006010215")
	m := hmac.New(sha256.New, []byte(ts))
	m.Write([]byte(d.secret))
	msgs := make(chan paho.Message, 16)
	o := paho.NewClientOptions().AddBroker("tcp://" + g.MQTT).SetClientID(d.id + "_0_0_" + ts).
		SetUsername(d.id).SetPassword(hex.EncodeToString(m.Sum(nil))).SetCleanSession(true).
		SetAutoReconnect(false).SetOrderMatters(true).
		SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { msgs <- m })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, msgs
}

// TestDelayedMessageDelivery: messages sent while an MQTT device is
// offline are held (PENDING), reach a real MQTT client in order when it
// connects, and end DELIVERED, as the Huawei SDK reads them back.
func TestDelayedMessageDelivery(t *testing.T) {
	g := StartGate(t, GateOptions{})
	d := createMQTTDevice(t, g, "heldp", "n1", false)
	ids := []string{"msg-1", "msg-2", "msg-3"}
	for i, id := range ids {
		out := g.MustDo(http.StatusCreated, "POST", g.P("/devices/"+d.id+"/messages"),
			map[string]any{"message_id": id, "name": "greeting", "message": fmt.Sprintf("hello %d", i+1)})
		if r := out["result"].(map[string]any); r["status"] != "PENDING" || r["created_time"] == "" {
			t.Fatalf("%s sent to an offline device: %v", id, out)
		}
	}
	if m := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+d.id+"/messages/msg-2"), nil); m["status"] != "PENDING" {
		t.Fatalf("held message: %v", m)
	}

	_, msgs := huaweiPaho(t, g, d)
	for i, id := range ids {
		select {
		case m := <-msgs:
			var body map[string]any
			if err := json.Unmarshal(m.Payload(), &body); err != nil || m.Topic() != "$oc/devices/"+d.id+"/sys/messages/down" ||
				body["id"] != id || body["content"] != fmt.Sprintf("hello %d", i+1) || body["object_device_id"] != d.id {
				t.Fatalf("message %d: %s %s", i+1, m.Topic(), m.Payload())
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("message %d not delivered; logs:\n%s", i+1, g.Logs())
		}
	}

	// Their statuses, read with Huawei's SDK (its field names).
	cred := basic.NewCredentialsBuilder().WithAk(g.AK).WithSk(g.SK).WithProjectId(g.Project).Build()
	client := iotda.NewIoTDAClient(iotda.IoTDAClientBuilder().WithEndpoint(g.API).WithCredential(cred).
		WithHttpConfig(g.sdkHTTPConfig(nil)).Build())
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := client.ListDeviceMessages(&model.ListDeviceMessagesRequest{DeviceId: d.id})
		if err != nil {
			t.Fatalf("ListDeviceMessages: %v", err)
		}
		var got []string
		for _, m := range *l.Messages {
			got = append(got, *m.MessageId+"="+*m.Status)
			if *m.Status == "DELIVERED" && (m.FinishedTime == nil || *m.FinishedTime == "") {
				t.Fatalf("%s DELIVERED without finished_time", *m.MessageId)
			}
		}
		if strings.Join(got, " ") == "msg-1=DELIVERED msg-2=DELIVERED msg-3=DELIVERED" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("statuses %v", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s, err := client.ShowDeviceMessage(&model.ShowDeviceMessageRequest{DeviceId: d.id, MessageId: "msg-3"})
	if err != nil || *s.Status != "DELIVERED" || *s.Name != "greeting" || *s.Topic != "$oc/devices/"+d.id+"/sys/messages/down" {
		t.Fatalf("ShowDeviceMessage: %v %+v", err, s)
	}

	// Online now: the next message is delivered at once.
	out := g.MustDo(http.StatusCreated, "POST", g.P("/devices/"+d.id+"/messages"), map[string]any{"message_id": "msg-4", "message": "now"})
	if out["result"].(map[string]any)["status"] != "DELIVERED" {
		t.Fatalf("message to an online device: %v", out)
	}
	select {
	case m := <-msgs:
		if !strings.Contains(string(m.Payload()), `"msg-4"`) {
			t.Fatalf("got %s", m.Payload())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("msg-4 not delivered")
	}
	// A custom topic the device has not subscribed to: refused with
	// IoTDA's code, and the message FAILED with it.
	st, out := g.Do("POST", g.P("/devices/"+d.id+"/messages"), map[string]any{"message_id": "msg-5", "message": "x", "topic": "display"})
	if st != http.StatusBadRequest || out["error_code"] != "IOTDA.014112" {
		t.Fatalf("unsubscribed custom topic: %d %v", st, out)
	}
	s, err = client.ShowDeviceMessage(&model.ShowDeviceMessageRequest{DeviceId: d.id, MessageId: "msg-5"})
	if err != nil || *s.Status != "FAILED" || s.ErrorInfo == nil || *s.ErrorInfo.ErrorCode != "IOTDA.014112" {
		t.Fatalf("unsubscribed message: %v %+v", err, s)
	}
	if st, out := g.Do("GET", g.P("/devices/"+d.id+"/messages/nope"), nil); st != http.StatusNotFound || out["error_code"] != "IOTDA.014101" {
		t.Fatalf("unknown message: %d %v", st, out)
	}
	if st, out := g.Do("POST", g.P("/devices/"+d.id+"/messages"), map[string]any{"message_id": "msg-4", "message": "again"}); st != http.StatusBadRequest || out["error_code"] != "IOTDA.000006" {
		t.Fatalf("duplicate message_id: %d %v", st, out)
	}
}

// TestCommandKindsByProtocol: IoTDA's rules, decided by the device's
// protocol: no synchronous command (nor message) to an NB-IoT device, no
// asynchronous command to an MQTT device.
func TestCommandKindsByProtocol(t *testing.T) {
	g := StartGate(t, GateOptions{})
	mq := createMQTTDevice(t, g, "kindsm", "n1", false)
	g.CreateProduct("kindsnb", "CoAP")
	nb := g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"node_id": "imei-kinds-1", "product_id": "kindsnb"})["device_id"].(string)
	huaweiPaho(t, g, mq) // online: the refusal is about the protocol, not the session
	waitOnline(t, g, mq.id)
	for _, tc := range []struct {
		name, dev, path string
		body            map[string]any
		msg             string
	}{
		{"sync command to NB-IoT", nb, "/commands", map[string]any{"paras": map[string]any{"a": 1}}, "synchronous commands are for MQTT devices only"},
		{"message to NB-IoT", nb, "/messages", map[string]any{"message": "x"}, "downlink messages are for MQTT devices only"},
		{"async command to MQTT", mq.id, "/async-commands", map[string]any{"paras": map[string]any{"a": 1}, "send_strategy": "delay"},
			"asynchronous commands are for NB-IoT (CoAP/LwM2M) devices only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, out := g.Do("POST", g.P("/devices/"+tc.dev+tc.path), tc.body)
			if st != http.StatusBadRequest || out["error_code"] != "IOTDA.000006" || !strings.Contains(fmt.Sprint(out["error_msg"]), tc.msg) {
				t.Fatalf("got %d %v, want 400 IOTDA.000006 %q", st, out, tc.msg)
			}
		})
	}
}
