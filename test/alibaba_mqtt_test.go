package test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// End to end, the real binary: the seed documents' pre-registered
// one-product-one-secret flow across HTTPS and MQTT. A device created
// over REST registers over HTTPS, connects over plain MQTT with the
// DeviceSecret it got (securemode 3), posts properties and a custom
// message; then every further registration, HTTPS or MQTT, is refused
// (6289 / CONNACK 5) until resetThing, after which MQTT registration
// delivers the same secret.
func TestAliPreregisteredE2E(t *testing.T) {
	g := StartGate(t, GateOptions{})
	g.aliProduct("a1TESTPK001", "prodSecretABC", true, false, "")
	id := g.aliDevice("a1TESTPK001", "dev1", "devSecret0123456789", false)

	reg := g.httpsRegister("a1TESTPK001", "dev1", "prodSecretABC")
	data, _ := reg["data"].(map[string]any)
	if reg["code"] != 200.0 || data["deviceSecret"] != "devSecret0123456789" {
		t.Fatalf("HTTPS registration: %v", reg)
	}
	c, code := g.secretConnect("a1TESTPK001", "dev1", "devSecret0123456789", false)
	if c == nil {
		t.Fatalf("connect: CONNACK 0x%02x", code)
	}
	g.waitStatus(id, "ONLINE")
	ans := c.request(t, "/sys/a1TESTPK001/dev1/thing/event/property/post",
		map[string]any{"id": "1", "version": "1.0", "method": "thing.event.property.post", "params": map[string]any{"Power": map[string]any{"value": 42, "time": 1700000000000}}})
	if ans["code"] != 200.0 || ans["id"] != "1" {
		t.Fatalf("property post answer %v", ans)
	}
	sh := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id+"/shadow"), nil)
	svc := sh["shadow"].([]any)[0].(map[string]any)
	if svc["service_id"] != "default" || svc["reported"].(map[string]any)["properties"].(map[string]any)["Power"] != 42.0 {
		t.Fatalf("shadow %v", sh)
	}
	c.publish(t, "/a1TESTPK001/dev1/user/update", "hello from dev1")
	if msgs := g.messages(id); len(msgs) != 1 || msgs[0] != "hello from dev1" {
		t.Fatalf("messages %v", msgs)
	}
	c.Disconnect(0)
	g.waitStatus(id, "OFFLINE")

	if again := g.httpsRegister("a1TESTPK001", "dev1", "prodSecretABC"); again["code"] != 6289.0 || again["message"] != "device is already active" {
		t.Fatalf("second HTTPS registration: %v", again)
	}
	if _, code := g.mqttRegister("register", "a1TESTPK001", "dev1", "prodSecretABC", true); code != 5 {
		t.Fatalf("MQTT registration of an active device: CONNACK %d, want 5", code)
	}
	g.MustDo(http.StatusOK, "POST", g.P("/devices/"+id+"/action?action_id=resetThing"), map[string]any{})
	res, code := g.mqttRegister("register", "a1TESTPK001", "dev1", "prodSecretABC", true)
	if res == nil || res["topic"] != "/ext/register" || res["deviceSecret"] != "devSecret0123456789" ||
		res["productKey"] != "a1TESTPK001" || res["deviceName"] != "dev1" {
		t.Fatalf("MQTT registration after resetThing: %v (CONNACK %d)", res, code)
	}
	if _, code := g.mqttRegister("register", "a1TESTPK001", "dev1", "prodSecretABC", false); code != 2 {
		t.Fatalf("MQTT registration over plain TCP: CONNACK %d, want 2", code)
	}

	// A secure_access device cannot use the plain listener; over MQTTS
	// (securemode 2) it can.
	sec := g.aliDevice("a1TESTPK001", "dev2", "devSecret9876543210", true)
	if _, code := g.secretConnect("a1TESTPK001", "dev2", "devSecret9876543210", false); code != 5 {
		t.Fatalf("secure_access over plain MQTT: CONNACK %d, want 5", code)
	}
	c = g.mustAliConnectSecret("a1TESTPK001", "dev2", "devSecret9876543210")
	g.waitStatus(sec, "ONLINE")
	if logs := g.Logs(); strings.Contains(logs, "devSecret0123456789") || strings.Contains(logs, "prodSecretABC") {
		t.Error("the log holds a secret")
	}
}

func (g *Gate) mustAliConnectSecret(pk, dn, secret string) *aliClient {
	g.t.Helper()
	c, code := g.secretConnect(pk, dn, secret, true)
	if c == nil {
		g.t.Fatalf("connect %s/%s over MQTTS: CONNACK 0x%02x; logs:\n%s", pk, dn, code, g.Logs())
	}
	return c
}

// Preregistration-free: regnwl creates the device and issues ClientIDs
// (at most max_client_ids_per_device), connwl connects with them, and the
// REST client-ids switch keeps one.
func TestAliPreregistrationFreeE2E(t *testing.T) {
	g := StartGate(t, GateOptions{Extra: "registry:\n  max_client_ids_per_device: 2\n"})
	g.aliProduct("pkfree", "prodSecretFree", true, true, "")
	var ids [][2]string
	for range 2 {
		res, code := g.mqttRegister("regnwl", "pkfree", "imei0001", "prodSecretFree", true)
		if res == nil || res["topic"] != "/ext/regnwl" || res["clientId"] == "" || res["deviceToken"] == "" {
			t.Fatalf("regnwl: %v (CONNACK %d)", res, code)
		}
		ids = append(ids, [2]string{res["clientId"], res["deviceToken"]})
	}
	if _, code := g.mqttRegister("regnwl", "pkfree", "imei0001", "prodSecretFree", true); code != 5 {
		t.Fatalf("third ClientID: CONNACK %d, want 5 (quota 2)", code)
	}
	id := "pkfree_imei0001"
	out := g.MustDo(http.StatusOK, "GET", g.P("/devices/"+id+"/client-ids"), nil)
	if n := len(out["client_ids"].([]any)); n != 2 {
		t.Fatalf("client ids %v", out)
	}
	connwl := func(cid, token string) (*aliClient, byte) {
		return g.aliConnect(cid+"|securemode=-2,authType=connwl|", "imei0001&pkfree", token, true)
	}
	c, code := connwl(ids[0][0], ids[0][1])
	if c == nil {
		t.Fatalf("connwl: CONNACK %d", code)
	}
	g.waitStatus(id, "ONLINE")
	c.publish(t, "/pkfree/imei0001/user/up", "token device")
	if msgs := g.messages(id); len(msgs) != 1 || msgs[0] != "token device" {
		t.Fatalf("messages %v", msgs)
	}
	// Keeping the second physical device kicks and refuses the first.
	g.MustDo(http.StatusOK, "POST", g.P("/devices/"+id+"/client-ids/"+ids[1][0]+"/keep"), map[string]any{})
	select {
	case <-c.lost:
	case <-time.After(5 * time.Second):
		t.Fatal("the switched-off ClientID's session was not ended")
	}
	if _, code := connwl(ids[0][0], ids[0][1]); code != 5 {
		t.Fatalf("connwl of a switched-off ClientID: CONNACK %d, want 5", code)
	}
	if c, code := connwl(ids[1][0], ids[1][1]); c == nil {
		t.Fatalf("connwl of the kept ClientID: CONNACK %d", code)
	}
}
