package mqtt

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/registry"
)

// aliProduct creates a product with a product secret and the Alibaba
// switches.
func (e *env) aliProduct(id, secret string, dynreg, nwl bool, nodeType string) {
	e.t.Helper()
	if _, err := e.reg.CreateProduct(context.Background(), registry.Product{ProjectID: e.project, ProductID: id,
		Name: "Ali " + id, DeviceType: "Sensor", ProtocolType: "MQTT", ProductSecret: secret,
		DynamicRegistration: dynreg, PreregistrationFree: nwl, NodeType: nodeType}); err != nil {
		e.t.Fatal(err)
	}
}

// aliDevice creates a device (DeviceName dn) of product pk.
func (e *env) aliDevice(pk, dn, secret string, secure bool) *registry.Device {
	e.t.Helper()
	d, err := e.reg.CreateDevice(context.Background(), registry.NewDevice{ProjectID: e.project, ProductID: pk,
		NodeID: dn, Auth: registry.AuthInfo{Secret: secret, SecureAccess: secure}})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// aliDial is an Alibaba device-secret CONNECT the way the Node SDK builds
// it: clientId pk&dn, sign over clientId, deviceName, productKey,
// timestamp.
func aliDial(pk, dn, secret string, tls bool) dial {
	cid := pk + "&" + dn
	ts := "1700000000000"
	mode := "3"
	if tls {
		mode = "2"
	}
	return dial{
		clientID: cid + "|securemode=" + mode + ",signmethod=hmacsha1,timestamp=" + ts + ",lan=NodeJS,_v=1.2.8|",
		username: ptr(dn + "&" + pk),
		password: ptr(aliSign("hmacsha1", secret, "clientId"+cid+"deviceName"+dn+"productKey"+pk+"timestamp"+ts)),
		tls:      tls,
	}
}

// regDial is an MQTT dynamic-registration CONNECT (over MQTTS unless
// plain): C SDK 4's shape.
func regDial(authType, pk, dn, productSecret string, plain bool) dial {
	const random = "8Ygb7ULYh53B6OA"
	return dial{
		clientID:  dn + "." + pk + "|random=" + random + ",authType=" + authType + ",securemode=2,signmethod=hmacsha256|",
		username:  ptr(dn + "&" + pk),
		password:  ptr(aliSign("hmacsha256", productSecret, "deviceName"+dn+"productKey"+pk+"random"+random)),
		tls:       !plain,
		keepalive: 10 * time.Second, // not checked for registrations
	}
}

// registered waits for a registration result on topic.
func (c *client) registered(t *testing.T, topic string) map[string]string {
	t.Helper()
	m := c.next(t, 5*time.Second)
	if m.Topic() != topic {
		t.Fatalf("result on %s, want %s", m.Topic(), topic)
	}
	var out map[string]string
	if err := json.Unmarshal(m.Payload(), &out); err != nil {
		t.Fatalf("result %s: %v", m.Payload(), err)
	}
	return out
}

// The reference's own vectors over the wire: a pre-registered device
// registers over MQTT (§3 sign), receives its secret, connects with it
// (§1.6 C SDK vector, upper-case hex) and cannot register again.
func TestMQTTAliRegisterThenConnect(t *testing.T) {
	e := newEnv(t)
	e.aliProduct("a1TESTPK001", "prodSecretABC", true, false, "")
	d := e.aliDevice("a1TESTPK001", "dev1", "devSecret0123456789", false)
	e.srv.register.linger = 300 * time.Millisecond

	reg := e.mustConnect(dial{
		clientID: "dev1.a1TESTPK001|random=8Ygb7ULYh53B6OA,authType=register,securemode=2,signmethod=hmacsha256,ext=3,|",
		username: ptr("dev1&a1TESTPK001"), password: ptr("1D7772FF22CC93AC220B4289323476655315B27CC92C9072527BA39FE40763D6"),
		tls: true, keepalive: 0,
	})
	got := reg.registered(t, "/ext/register")
	want := map[string]string{"productKey": "a1TESTPK001", "deviceName": "dev1", "deviceSecret": "devSecret0123456789"}
	if len(got) != len(want) || got["deviceSecret"] != want["deviceSecret"] || got["productKey"] != want["productKey"] || got["deviceName"] != want["deviceName"] {
		t.Fatalf("result %v, want %v", got, want)
	}
	// A registration connection may do nothing else, speaks for no
	// device, and is closed after the linger time.
	if res := reg.sub(t, "/sys/a1TESTPK001/dev1/#", "/ext/register"); res["/sys/a1TESTPK001/dev1/#"] != 0x80 || res["/ext/register"] != 0x80 {
		t.Fatalf("registration connection subscribed: %v", res)
	}
	if st := e.status(d.DeviceID); st != registry.StatusInactive {
		t.Fatalf("registration made the device %s", st)
	}
	reg.waitLost(t)

	c := e.mustConnect(dial{
		clientID: "a1TESTPK001.dev1|timestamp=2524608000000,_v=sdk-c-3.0.1,securemode=3,signmethod=hmacsha256,lan=C,gw=0,ext=0|",
		username: ptr("dev1&a1TESTPK001"), password: ptr("309BD43DD5AB5D636630A1A03590179DF319F86988E0842368498B1614CD99CC"),
	})
	e.waitStatus(d.DeviceID, registry.StatusOnline)
	c.Disconnect(0)

	e.refused(regDial("register", "a1TESTPK001", "dev1", "prodSecretABC", false), 0x05) // already active
	e.refused(regDial("register", "a1TESTPK001", "dev1", "prodSecretABC", true), 0x02)  // plain TCP
}

func TestMQTTAliSecretAuthentication(t *testing.T) {
	e := newEnv(t)
	e.aliProduct("a14Xib5kdYd", "prodSecretLight", false, false, "")
	e.aliDevice("a14Xib5kdYd", "light1983432", "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq", false)
	e.aliDevice("a14Xib5kdYd", "secure1", "secretSecure01", true)
	cold := e.aliDevice("a14Xib5kdYd", "cold1", "secretCold0001", false)
	if err := e.reg.SetFrozen(context.Background(), e.project, cold.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	// The blog vector (reference §1.6), verbatim.
	blog := dial{clientID: "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|",
		username: ptr("light1983432&a14Xib5kdYd"), password: ptr("b2488041f64f425016b467ee1c94959ebd592ad1")}
	with := func(d dial, f func(*dial)) dial { f(&d); return d }

	ok := []struct {
		name string
		d    dial
	}{
		{"blog vector", blog},
		{"upper-case hex", with(blog, func(d *dial) { d.password = ptr(strings.ToUpper(*d.password)) })},
		{"Node SDK shape", aliDial("a14Xib5kdYd", "light1983432", "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq", false)},
		{"securemode 2 over MQTTS", aliDial("a14Xib5kdYd", "light1983432", "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq", true)},
		{"secure_access over MQTTS", aliDial("a14Xib5kdYd", "secure1", "secretSecure01", true)},
		{"keepalive 30 s", with(blog, func(d *dial) { d.keepalive = 30 * time.Second })},
		{"keepalive 1200 s", with(blog, func(d *dial) { d.keepalive = 1200 * time.Second })},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			e.mustConnect(tt.d).Disconnect(0)
		})
	}

	refused := []struct {
		name string
		d    dial
		code byte
	}{
		{"wrong sign", with(blog, func(d *dial) { d.password = ptr(strings.Repeat("0", 40)) }), 0x05},
		{"sign of another timestamp", with(blog, func(d *dial) {
			d.clientID = "SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321847|"
		}), 0x05},
		{"sign of another method", with(blog, func(d *dial) {
			d.clientID = "SN1928339|securemode=3,signmethod=hmacmd5,timestamp=1539421321846|"
		}), 0x04}, // 40 hex digits are no MD5
		{"the Node SDK's sha256 bug", with(blog, func(d *dial) {
			d.clientID = "SN1928339|securemode=3,signmethod=hmacsha256,timestamp=1539421321846|"
		}), 0x04},
		{"password not hex", with(blog, func(d *dial) { d.password = ptr(strings.Repeat("zz", 20)) }), 0x04},
		{"no password", with(blog, func(d *dial) { d.password = ptr("") }), 0x04},
		{"username without &", with(blog, func(d *dial) { d.username = ptr("light1983432") }), 0x04},
		{"unknown device", with(blog, func(d *dial) { d.username = ptr("ghost&a14Xib5kdYd") }), 0x05},
		{"unknown product", with(blog, func(d *dial) { d.username = ptr("light1983432&nosuchpk") }), 0x05},
		{"securemode 2 on plain MQTT", with(blog, func(d *dial) {
			d.clientID = "SN1928339|securemode=2,signmethod=hmacsha1,timestamp=1539421321846|"
		}), 0x02},
		{"securemode 3 over MQTTS", with(blog, func(d *dial) { d.tls = true }), 0x02},
		{"no securemode", with(blog, func(d *dial) { d.clientID = "SN1928339|signmethod=hmacsha1,timestamp=1539421321846|" }), 0x02},
		{"ID² securemode", with(blog, func(d *dial) {
			d.clientID = "SN1928339|securemode=4,signmethod=hmacsha1,timestamp=1539421321846|"
		}), 0x02},
		{"unsupported signmethod", with(blog, func(d *dial) {
			d.clientID = "SN1928339|securemode=3,signmethod=sha256,timestamp=1539421321846|"
		}), 0x02},
		{"unsupported authType", with(blog, func(d *dial) {
			d.clientID = "SN1928339|securemode=3,signmethod=hmacsha1,authtype=id2,timestamp=1539421321846|"
		}), 0x02},
		{"malformed ClientId", with(blog, func(d *dial) { d.clientID = "SN1928339|securemode=3,signmethod=hmacsha1" }), 0x02},
		{"keepalive 29 s", with(blog, func(d *dial) { d.keepalive = 29 * time.Second }), 0x02},
		{"keepalive 1201 s", with(blog, func(d *dial) { d.keepalive = 1201 * time.Second }), 0x02},
		{"secure_access over plain MQTT", aliDial("a14Xib5kdYd", "secure1", "secretSecure01", false), 0x05},
		{"frozen device", aliDial("a14Xib5kdYd", "cold1", "secretCold0001", false), 0x05},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) { e.refused(tt.d, tt.code) })
	}
	if logs := e.logs.String(); strings.Contains(logs, "oLyaKqVxtRvjH284LdhqVgVUx1UPy6zq") || strings.Contains(logs, "b2488041f64f") {
		t.Error("the log holds a secret or a sign")
	}
}

// MQTT 5 clients get the MQTT 5 reason codes for Alibaba refusals.
func TestMQTT5AliAuthentication(t *testing.T) {
	e := newEnv(t)
	e.aliProduct("pk5", "prodSecret555", false, false, "")
	e.aliDevice("pk5", "dev5", "secretFive0001", false)
	good := aliDial("pk5", "dev5", "secretFive0001", false)
	tests := []struct {
		name, clientID, user, password string
		want                           byte
	}{
		{"accepted", good.clientID, *good.username, *good.password, 0x00},
		{"malformed ClientId", "pk5&dev5|securemode=3", *good.username, *good.password, 0x85},
		{"malformed password", good.clientID, *good.username, "nothex", 0x86},
		{"wrong sign", good.clientID, *good.username, strings.Repeat("a", 40), 0x87},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, _ := connect5(t, e.srv.Addr(), tt.clientID, tt.user, tt.password, nil)
			if ca == nil || ca.ReasonCode != tt.want {
				t.Fatalf("CONNACK %+v, want reason 0x%02x", ca, tt.want)
			}
		})
	}
}

// An Alibaba device uses its two topic spaces: a property post lands in
// the shadow and is answered, a custom topic is kept as a message, and
// nothing outside them is allowed. A new CONNECT takes over the old one.
func TestMQTTAliUplinks(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.aliProduct("pku", "prodSecretUp1", false, false, "")
	d := e.aliDevice("pku", "du", "secretUplink01", false)
	other := e.aliDevice("pku", "dother", "secretOther001", false)
	c := e.mustConnect(aliDial("pku", "du", "secretUplink01", false))
	e.ready(d.DeviceID)

	c.pub(t, "/sys/pku/du/thing/event/property/post", 1,
		`{"id":"1|exp-topic|/sys/pku/du/thing/event/property/post_reply","version":"1.0","params":{"Power":{"value":"on","time":1700000000000},"light:Level":3},"method":"thing.event.property.post"}`)
	m := c.next(t, 5*time.Second)
	var reply map[string]any
	if err := json.Unmarshal(m.Payload(), &reply); err != nil || m.Topic() != "/sys/pku/du/thing/event/property/post_reply" ||
		reply["code"] != 200.0 || reply["id"] != "1|exp-topic|/sys/pku/du/thing/event/property/post_reply" ||
		reply["method"] != "thing.event.property.post" {
		t.Fatalf("reply on %s: %s", m.Topic(), m.Payload())
	}
	sh, err := e.reg.DeviceShadow(ctx, e.project, d.DeviceID)
	if err != nil || len(sh.Services) != 2 || string(sh.Services[0].Properties["Power"]) != `"on"` ||
		sh.Services[1].ServiceID != "light" || string(sh.Services[1].Properties["Level"]) != "3" {
		t.Fatalf("shadow %+v %v", sh, err)
	}
	// A malformed post is answered 460 and changes nothing; sys.ack 0
	// asks for no answer.
	c.pub(t, "/sys/pku/du/thing/event/property/post", 1, `{"id":2,"params":[1]}`)
	if m := c.next(t, 5*time.Second); !strings.Contains(string(m.Payload()), `"code":460`) || !strings.Contains(string(m.Payload()), `"id":2`) {
		t.Fatalf("reply %s", m.Payload())
	}
	c.pub(t, "/sys/pku/du/thing/event/property/post", 1, `{"id":3,"sys":{"ack":0},"params":{"X":1}}`)
	c.none(t, 200*time.Millisecond)

	c.pub(t, "/pku/du/user/update", 1, "custom up")
	c.pub(t, "/sys/pku/du/thing/event/alarm/post", 1, `{"id":"4","params":{}}`) // admitted, discarded
	msgs, _ := e.reg.Messages(ctx, e.project, d.DeviceID, 10)
	if len(msgs) != 1 || string(msgs[0].Payload) != "custom up" || msgs[0].Topic != "/pku/du/user/update" {
		t.Fatalf("messages %+v", msgs)
	}
	res := c.sub(t, "/sys/pku/du/thing/service/property/set", "/pku/du/user/get", "/sys/pku/dother/#", "$oc/devices/"+d.DeviceID+"/#")
	if res["/sys/pku/du/thing/service/property/set"] != 1 || res["/pku/du/user/get"] != 1 ||
		res["/sys/pku/dother/#"] != 0x80 || res["$oc/devices/"+d.DeviceID+"/#"] != 0x80 {
		t.Fatalf("SUBACK %v", res)
	}
	denied := e.srv.Stats().DeniedPublishes
	c.pub(t, "/pku/dother/user/update", 0, "forged")
	c.pub(t, "$oc/devices/"+d.DeviceID+"/sys/messages/up", 0, "other dialect")
	eventually(t, func() bool { return e.srv.Stats().DeniedPublishes == denied+2 }, "2 denied publishes")
	if msgs, _ := e.reg.Messages(ctx, e.project, other.DeviceID, 10); len(msgs) != 0 {
		t.Fatalf("a forged message reached %s", other.DeviceID)
	}

	// Takeover: same device, another ClientId.
	second := e.mustConnect(dial{clientID: "other-client|securemode=3,signmethod=hmacmd5|", username: ptr("du&pku"),
		password: ptr(aliSign("hmacmd5", "secretUplink01", "clientIdother-clientdeviceNameduproductKeypku"))})
	c.waitLost(t)
	e.ready(d.DeviceID)
	second.Disconnect(0)
	e.waitStatus(d.DeviceID, registry.StatusOffline)
}

// Preregistration-free: regnwl issues a ClientID and DeviceToken, connwl
// connects with them; at most 5 ClientIDs; keeping one refuses the rest.
func TestMQTTAliRegnwlConnwl(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.aliProduct("pkfree", "prodSecretFree", true, true, "")
	e.aliProduct("pkpre", "prodSecretPre1", true, false, "")
	e.srv.register.linger = time.Minute // the device disconnects itself

	type identity struct{ clientID, token string }
	var ids []identity
	for range registry.DefaultQuotas.ClientIDsPerDevice {
		c := e.mustConnect(regDial("regnwl", "pkfree", "imei001", "prodSecretFree", false))
		got := c.registered(t, "/ext/regnwl")
		if got["productKey"] != "pkfree" || got["deviceName"] != "imei001" || got["clientId"] == "" || got["deviceToken"] == "" {
			t.Fatalf("regnwl result %v", got)
		}
		c.Disconnect(0)
		ids = append(ids, identity{got["clientId"], got["deviceToken"]})
	}
	e.refused(regDial("regnwl", "pkfree", "imei001", "prodSecretFree", false), 0x05) // quota
	e.refused(regDial("regnwl", "pkfree", "imei002", "wrongSecret000", false), 0x04)
	e.refused(regDial("regnwl", "pkpre", "imei003", "prodSecretPre1", false), 0x05) // not preregistration-free
	e.refused(regDial("regnwl", "nosuchpk", "imei003", "prodSecretPre1", false), 0x04)

	connwl := func(id identity, tls bool) dial {
		return dial{clientID: id.clientID + "|securemode=-2,authType=connwl,_ss=1,ext=3|", username: ptr("imei001&pkfree"),
			password: ptr(id.token), tls: tls}
	}
	d, err := e.reg.DeviceByProductNode(ctx, "pkfree", "imei001")
	if err != nil {
		t.Fatal(err)
	}
	c := e.mustConnect(connwl(ids[0], true))
	e.ready(d.DeviceID)
	c.pub(t, "/pkfree/imei001/user/up", 1, "from a token device")
	c.Disconnect(0)
	e.refused(connwl(ids[0], false), 0x05)                                 // secure_access: MQTTS only
	e.refused(connwl(identity{ids[0].clientID, ids[1].token}, true), 0x05) // another ClientID's token
	e.refused(dial{clientID: ids[0].clientID + "|securemode=-2|", username: ptr("imei001&pkfree"), password: ptr(""), tls: true}, 0x04)

	// Keep one physical device: the others are refused from then on.
	if _, err := e.reg.KeepClientID(ctx, e.project, d.DeviceID, ids[1].clientID); err != nil {
		t.Fatal(err)
	}
	e.refused(connwl(ids[0], true), 0x05)
	e.mustConnect(connwl(ids[1], true)).Disconnect(0)
	if _, err := e.reg.ClearClientIDs(ctx, e.project, d.DeviceID); err != nil {
		t.Fatal(err)
	}
	e.refused(connwl(ids[1], true), 0x05)
}

// Registration refusals: CONNACK 2 for a malformed request, 4 for a
// wrong product-secret sign, 5 when the product or device refuses.
func TestMQTTAliRegistrationRefusals(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.aliProduct("pkon", "prodSecretOn01", true, false, "")
	e.aliProduct("pkoff", "prodSecretOff1", false, false, "")
	e.aliDevice("pkon", "d1", "secretDevice01", false)
	e.aliDevice("pkoff", "d1", "secretDevice02", false)
	cold := e.aliDevice("pkon", "cold", "secretDevice03", false)
	if err := e.reg.SetFrozen(ctx, e.project, cold.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	with := func(d dial, f func(*dial)) dial { f(&d); return d }
	good := regDial("register", "pkon", "d1", "prodSecretOn01", false)
	tests := []struct {
		name string
		d    dial
		code byte
	}{
		{"plain TCP", regDial("register", "pkon", "d1", "prodSecretOn01", true), 0x02},
		{"no random", with(good, func(d *dial) { d.clientID = "d1.pkon|authType=register,securemode=2,signmethod=hmacsha256|" }), 0x02},
		{"securemode 3", with(good, func(d *dial) { d.clientID = strings.Replace(d.clientID, "securemode=2", "securemode=3", 1) }), 0x02},
		{"unsupported signmethod", with(good, func(d *dial) { d.clientID = strings.Replace(d.clientID, "hmacsha256", "sha256", 1) }), 0x02},
		{"wrong product secret", regDial("register", "pkon", "d1", "notTheSecret01", false), 0x04},
		{"unknown product", regDial("register", "pkghost", "d1", "prodSecretOn01", false), 0x04},
		{"sign not hex", with(good, func(d *dial) { d.password = ptr("xyz") }), 0x04},
		{"dynamic registration off", regDial("register", "pkoff", "d1", "prodSecretOff1", false), 0x05},
		{"not pre-registered", regDial("register", "pkon", "ghost", "prodSecretOn01", false), 0x05},
		{"frozen", regDial("register", "pkon", "cold", "prodSecretOn01", false), 0x05},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { e.refused(tt.d, tt.code) })
	}
	// None of that delivered d1's secret: a good request still can, with
	// securemode -2 as newer documents say.
	e.srv.register.linger = time.Minute
	c := e.mustConnect(with(good, func(d *dial) { d.clientID = strings.Replace(d.clientID, "securemode=2", "securemode=-2", 1) }))
	if got := c.registered(t, "/ext/register"); got["deviceSecret"] != "secretDevice01" {
		t.Fatalf("result %v", got)
	}
	if d, err := e.reg.DeviceByProductNode(ctx, "pkon", "d1"); err != nil || d.DynReg != "delivered" {
		t.Fatalf("device %+v %v", d, err)
	}
	// A QoS 1 publish from a registration connection closes it (MQTT
	// 3.1.1 has no negative PUBACK).
	c.Publish("/sys/pkon/d1/thing/event/property/post", 1, false, "{}")
	c.waitLost(t)
}
