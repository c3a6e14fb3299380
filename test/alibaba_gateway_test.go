package test

import (
	"crypto/sha1"
	"net/http"
	"strings"
	"testing"
)

// signedSub is a sub-device's signed identity for topo add and login
// (HMAC-SHA1 with its DeviceSecret, camel-case method as the C SDK 3).
func signedSub(pk, dn, secret string) map[string]any {
	cid, ts := pk+"."+dn, "2524608000000"
	return map[string]any{"productKey": pk, "deviceName": dn, "clientId": cid, "timestamp": ts, "signMethod": "hmacSha1",
		"sign": hmacHex(sha1.New, secret, "clientId"+cid+"deviceName"+dn+"productKey"+pk+"timestamp"+ts)}
}

// End to end: an Alibaba gateway registers, attaches and logs in
// sub-devices over MQTT; REST shows the relation (gateway_id, node_type,
// the gateway filter), the sub-device's status and its messages; the
// gateway quota holds, counting Huawei-style sub-devices created over
// REST.
func TestAliGatewayE2E(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: "registry:\n  max_sub_devices_per_gateway: 2\n"})
	g.aliProduct("gwpk", "prodSecretGw01", false, false, "GATEWAY")
	g.aliProduct("subpk", "prodSecretSub1", true, false, "")
	gwID := g.aliDevice("gwpk", "gw1", "secretGateway1", false)
	subID := g.aliDevice("subpk", "s1", "secretSubDev01", false)
	g.aliDevice("subpk", "s2", "secretSubDev02", false)
	if d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+gwID), nil); d["node_type"] != "GATEWAY" {
		t.Fatalf("gateway node_type %v", d["node_type"])
	}

	gw := g.mustAliConnect("gwpk.gw1|securemode=3,signmethod=hmacsha1,timestamp=2524608000000|", "gw1&gwpk",
		hmacHex(sha1.New, "secretGateway1", "clientIdgwpk.gw1deviceNamegw1productKeygwpktimestamp2524608000000"), false)
	g.waitStatus(gwID, "ONLINE")
	req := func(params any) map[string]any { return map[string]any{"id": "1", "version": "1.0", "params": params} }

	// Sub-device dynamic registration: the secret, once.
	ans := gw.request(t, "/sys/gwpk/gw1/thing/sub/register", req([]any{map[string]string{"productKey": "subpk", "deviceName": "s1"}}))
	data, _ := ans["data"].([]any)
	if ans["code"] != 200.0 || len(data) != 1 || data[0].(map[string]any)["deviceSecret"] != "secretSubDev01" ||
		data[0].(map[string]any)["iotId"] != subID {
		t.Fatalf("sub register: %v", ans)
	}
	if ans := gw.request(t, "/sys/gwpk/gw1/thing/sub/register", req([]any{map[string]string{"productKey": "subpk", "deviceName": "s1"}})); ans["code"] != 6289.0 {
		t.Fatalf("second sub register: %v", ans)
	}

	// Topology: REST shows the relation.
	if ans := gw.request(t, "/sys/gwpk/gw1/thing/topo/add", req([]any{signedSub("subpk", "s1", "secretSubDev01")})); ans["code"] != 200.0 {
		t.Fatalf("topo add: %v", ans)
	}
	if d := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+subID), nil); d["gateway_id"] != gwID {
		t.Fatalf("sub-device gateway_id %v, want %s", d["gateway_id"], gwID)
	}
	// A Huawei-style sub-device created over REST joins the same gateway
	// and fills its quota (2): the next topo add is refused with 6400.
	g.MustDo(http.StatusCreated, "POST", g.P("/devices"), map[string]any{"product_id": "subpk", "node_id": "rest1", "gateway_id": gwID})
	list := g.MustDo(http.StatusOK, "GET", g.P("/devices?gateway_id="+gwID), nil)
	if n := len(list["devices"].([]any)); n != 2 {
		t.Fatalf("the gateway lists %d sub-devices, want 2: %v", n, list)
	}
	if ans := gw.request(t, "/sys/gwpk/gw1/thing/topo/add", req([]any{signedSub("subpk", "s2", "secretSubDev02")})); ans["code"] != 6400.0 {
		t.Fatalf("topo add over quota: %v", ans)
	}
	if d := g.MustDo(http.StatusOK, "GET", g.P("/devices/subpk_s2"), nil); d["gateway_id"] != "subpk_s2" {
		t.Fatalf("a refused topo add attached s2: %v", d["gateway_id"])
	}

	// Login: the sub-device is ONLINE and its data flows through the
	// gateway's connection.
	if ans := gw.request(t, "/ext/session/gwpk/gw1/combine/login", req(signedSub("subpk", "s2", "secretSubDev02"))); ans["code"] != 6401.0 {
		t.Fatalf("login of a sub-device not attached: %v", ans)
	}
	if ans := gw.request(t, "/ext/session/gwpk/gw1/combine/login", req(signedSub("subpk", "s1", "secretSubDev01"))); ans["code"] != 200.0 {
		t.Fatalf("login: %v", ans)
	}
	g.waitStatus(subID, "ONLINE")
	gw.publish(t, "/subpk/s1/user/data", "through the gateway")
	if msgs := g.messages(subID); len(msgs) != 1 || msgs[0] != "through the gateway" {
		t.Fatalf("sub-device messages %v", msgs)
	}
	if msgs := g.messages(gwID); len(msgs) != 0 {
		t.Fatalf("gateway messages %v", msgs)
	}
	if ans := gw.request(t, "/ext/session/gwpk/gw1/combine/logout", req(map[string]string{"productKey": "subpk", "deviceName": "s1"})); ans["code"] != 200.0 {
		t.Fatalf("logout: %v", ans)
	}
	g.waitStatus(subID, "OFFLINE")
	if ans := gw.request(t, "/ext/session/gwpk/gw1/combine/logout", req(map[string]string{"productKey": "subpk", "deviceName": "s1"})); ans["code"] != 520.0 {
		t.Fatalf("second logout: %v", ans)
	}

	// Logged in again, the sub-device goes OFFLINE with its gateway.
	if ans := gw.request(t, "/ext/session/gwpk/gw1/combine/login", req(signedSub("subpk", "s1", "secretSubDev01"))); ans["code"] != 200.0 {
		t.Fatalf("login: %v", ans)
	}
	g.waitStatus(subID, "ONLINE")
	gw.Disconnect(0)
	g.waitStatus(subID, "OFFLINE")
	g.waitStatus(gwID, "OFFLINE")
	if logs := g.Logs(); !containsAll(logs, "sub-device logged in through its gateway", "sub-device logged out with its gateway") {
		t.Errorf("log lacks the sub-device session records:\n%s", logs)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
