package test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// An LwM2M 1.1 Send reaches forwarding twice: as a device message (topic
// /dp) and as a property report of the service LwM2M.
func TestForwardingLwM2MSend(t *testing.T) {
	g := startLwM2MGate(t)
	rcv := newReceiver(t, false)
	g.forwardTo(g.Token, g.Project, "device.message", "report", "", rcv.url(), nil)
	g.forwardTo(g.Token, g.Project, "device.property", "report", "", rcv.url(), nil)
	dev := lwm2mDevice(t, g, "fw-sender", false, nil)
	time.Sleep(1500 * time.Millisecond) // the engine's reload picks the actions up
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "fw-sender", Lifetime: 60, Formats: []uint16{format.FormatSenMLCBOR}})
	ctx := context.Background()
	if err := c.Register(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Set("/3/0/9", format.IntegerValue(64)); err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctx, format.FormatSenMLCBOR, "/3/0/9"); err != nil {
		t.Fatal(err)
	}
	var msg, prop *pushEnvelope
	rcv.waitFor("the Send's message and property report", 15*time.Second, g, func(ps []push) bool {
		for _, p := range ps {
			if p.env.NotifyData.Header.DeviceID != dev {
				continue
			}
			switch p.env.Resource {
			case "device.message":
				msg = &p.env
			case "device.property":
				prop = &p.env
			}
		}
		return msg != nil && prop != nil
	})
	var body struct {
		Topic   string `json:"topic"`
		Content []struct {
			Path  string `json:"path"`
			Value any    `json:"value"`
		} `json:"content"`
	}
	if err := json.Unmarshal(msg.NotifyData.Body, &body); err != nil || body.Topic != "/dp" || len(body.Content) != 1 ||
		body.Content[0].Path != "/3/0/9" || body.Content[0].Value != 64.0 {
		t.Errorf("Send's message push %s (%v)", msg.NotifyData.Body, err)
	}
	var props struct {
		Services []struct {
			ServiceID  string         `json:"service_id"`
			Properties map[string]any `json:"properties"`
		} `json:"services"`
	}
	if err := json.Unmarshal(prop.NotifyData.Body, &props); err != nil || len(props.Services) != 1 ||
		props.Services[0].ServiceID != "LwM2M" || props.Services[0].Properties["/3/0/9"] != 64.0 {
		t.Errorf("Send's property push %s (%v)", prop.NotifyData.Body, err)
	}
}
