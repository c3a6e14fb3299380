package test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/lwm2mclient"
)

// An LwM2M device's registration (ONLINE) and /19/0/0 notification reach
// the same rules as MQTT devices' uplinks.
func TestForwardingLwM2MUplink(t *testing.T) {
	g := startLwM2MGate(t)
	rcv := newReceiver(t, false)
	g.forwardTo(g.Token, g.Project, "device.message", "report", "", rcv.url(), nil)
	g.forwardTo(g.Token, g.Project, "device.status", "update", "", rcv.url(), nil)
	dev := lwm2mDevice(t, g, "fw-meter", false, nil)
	time.Sleep(1500 * time.Millisecond) // the engine's reload picks the actions up
	c := goClient(t, g, lwm2mclient.Config{Endpoint: "fw-meter", Lifetime: 60})
	if err := c.Register(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !c.Observed("/19/0/0") {
		if time.Now().After(deadline) {
			t.Fatal("the platform did not observe /19/0/0")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.SendData([]byte{0xde, 0xad, 0xbe, 0xef}); err != nil {
		t.Fatal(err)
	}
	var uplink, online *pushEnvelope
	rcv.waitFor("the LwM2M uplink and status", 15*time.Second, g, func(ps []push) bool {
		for _, p := range ps {
			switch {
			case p.env.Resource == "device.message" && p.env.NotifyData.Header.DeviceID == dev:
				uplink = &p.env
			case p.env.Resource == "device.status" && p.env.NotifyData.Header.DeviceID == dev:
				online = &p.env
			}
		}
		return uplink != nil && online != nil
	})
	var body struct {
		Topic    string `json:"topic"`
		Content  string `json:"content"`
		Encoding string `json:"encoding"`
	}
	if err := json.Unmarshal(uplink.NotifyData.Body, &body); err != nil || body.Topic != "/19/0/0" || body.Encoding != "base64" ||
		body.Content != base64.StdEncoding.EncodeToString([]byte{0xde, 0xad, 0xbe, 0xef}) {
		t.Errorf("LwM2M uplink push %s", uplink.NotifyData.Body)
	}
	if uplink.NotifyData.Header.NodeID != "fw-meter" || uplink.NotifyData.Header.ProductID != "nb" {
		t.Errorf("LwM2M uplink header %+v", uplink.NotifyData.Header)
	}
	var st struct{ Status string }
	if err := json.Unmarshal(online.NotifyData.Body, &st); err != nil || st.Status != "ONLINE" {
		t.Errorf("LwM2M status push %s", online.NotifyData.Body)
	}
}
