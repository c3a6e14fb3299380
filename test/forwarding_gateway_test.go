package test

import (
	"crypto/sha1"
	"encoding/json"
	"testing"
	"time"
)

// A sub-device's uplink, sent through its (Alibaba) gateway's
// connection, reaches the forwarding rules as the sub-device's, with the
// gateway in the header.
func TestForwardingSubDeviceUplink(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: "forwarding:\n  poll: 10ms\n  reload: 100ms\n"})
	rcv := newReceiver(t, false)
	g.forwardTo(g.Token, g.Project, "device.message", "report", "", rcv.url(), nil)
	g.aliProduct("fgwpk", "prodSecretGw01", false, false, "GATEWAY")
	g.aliProduct("fsubpk", "prodSecretSub1", true, false, "")
	gwID := g.aliDevice("fgwpk", "gw1", "secretGateway1", false)
	subID := g.aliDevice("fsubpk", "s1", "secretSubDev01", false)
	gw := g.mustAliConnect("fgwpk.gw1|securemode=3,signmethod=hmacsha1,timestamp=2524608000000|", "gw1&fgwpk",
		hmacHex(sha1.New, "secretGateway1", "clientIdfgwpk.gw1deviceNamegw1productKeyfgwpktimestamp2524608000000"), false)
	g.waitStatus(gwID, "ONLINE")
	req := func(params any) map[string]any { return map[string]any{"id": "1", "version": "1.0", "params": params} }
	if ans := gw.request(t, "/sys/fgwpk/gw1/thing/topo/add", req([]any{signedSub("fsubpk", "s1", "secretSubDev01")})); ans["code"] != 200.0 {
		t.Fatalf("topo add: %v", ans)
	}
	if ans := gw.request(t, "/ext/session/fgwpk/gw1/combine/login", req(signedSub("fsubpk", "s1", "secretSubDev01"))); ans["code"] != 200.0 {
		t.Fatalf("login: %v", ans)
	}
	g.waitStatus(subID, "ONLINE")
	gw.publish(t, "/fsubpk/s1/user/data", "through the gateway")
	ps := rcv.waitFor("the sub-device's uplink", 10*time.Second, g, func(ps []push) bool { return len(ps) >= 1 })
	e := ps[0].env
	var body struct {
		Topic   string `json:"topic"`
		Content string `json:"content"`
	}
	if err := json.Unmarshal(e.NotifyData.Body, &body); err != nil || body.Content != "through the gateway" || body.Topic != "/fsubpk/s1/user/data" {
		t.Errorf("sub-device push body %s", e.NotifyData.Body)
	}
	if e.NotifyData.Header.DeviceID != subID || e.NotifyData.Header.GatewayID != gwID {
		t.Errorf("sub-device push header %+v, want device %s of gateway %s", e.NotifyData.Header, subID, gwID)
	}
}
