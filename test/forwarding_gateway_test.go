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
	gw, gwID, subID := g.onlineSubDevice(t, "fgwpk", "fsubpk")
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

// onlineSubDevice connects the Alibaba gateway gw1 of product gwPK and
// logs its sub-device s1 of product subPK in through it (topo/add, then
// combine/login), both ONLINE; it returns the gateway's connection and
// the two device ids.
func (g *Gate) onlineSubDevice(t *testing.T, gwPK, subPK string) (gw *aliClient, gwID, subID string) {
	t.Helper()
	g.aliProduct(gwPK, "prodSecretGw01", false, false, "GATEWAY")
	g.aliProduct(subPK, "prodSecretSub1", true, false, "")
	gwID = g.aliDevice(gwPK, "gw1", "secretGateway1", false)
	subID = g.aliDevice(subPK, "s1", "secretSubDev01", false)
	const ts = "2524608000000"
	gw = g.mustAliConnect(gwPK+".gw1|securemode=3,signmethod=hmacsha1,timestamp="+ts+"|", "gw1&"+gwPK,
		hmacHex(sha1.New, "secretGateway1", "clientId"+gwPK+".gw1deviceNamegw1productKey"+gwPK+"timestamp"+ts), false)
	g.waitStatus(gwID, "ONLINE")
	req := func(params any) map[string]any { return map[string]any{"id": "1", "version": "1.0", "params": params} }
	if ans := gw.request(t, "/sys/"+gwPK+"/gw1/thing/topo/add", req([]any{signedSub(subPK, "s1", "secretSubDev01")})); ans["code"] != 200.0 {
		t.Fatalf("topo add: %v", ans)
	}
	if ans := gw.request(t, "/ext/session/"+gwPK+"/gw1/combine/login", req(signedSub(subPK, "s1", "secretSubDev01"))); ans["code"] != 200.0 {
		t.Fatalf("login: %v", ans)
	}
	g.waitStatus(subID, "ONLINE")
	return gw, gwID, subID
}
