package mqtt

import (
	"encoding/json"
	"testing"
	"time"
)

func TestMQTTAliTopicACL(t *testing.T) {
	dev := &conn{device: "pk1_dn1", self: owner{"pk1", "dn1"}, spaces: aliDeviceSpaces}
	gw := &conn{device: "gwp_gw1", self: owner{"gwp", "gw1"}, spaces: aliGatewaySpaces, gateway: true,
		subs: map[owner]subSession{{"pk1", "s1"}: {device: "pk1_s1"}}}
	reg := &conn{registration: &registrationResult{}}

	pub := []struct {
		c     *conn
		topic string
		kind  uplink
		dev   string
	}{
		{dev, "/sys/pk1/dn1/thing/event/property/post", uplinkAlinkProperties, "pk1_dn1"},
		{dev, "/sys/pk1/dn1/thing/event/alarm/post", uplinkAlinkOther, "pk1_dn1"},
		{dev, "/sys/pk1/dn1/thing/sub/register", uplinkSubRegister, "pk1_dn1"}, // answered "not a gateway"
		{dev, "/sys/pk1/dn1/thing/service/property/set_reply", uplinkAlinkSetReply, "pk1_dn1"},
		{dev, "/sys/pk1/dn1/thing/service/reboot_reply", uplinkAlinkServiceReply, "pk1_dn1"},
		{dev, "/sys/pk1/dn1/thing/service/property/set", uplinkAlinkOther, "pk1_dn1"},
		{dev, "/sys/pk1/dn1/rrpc/response/123", uplinkRRPCResponse, "pk1_dn1"},
		{dev, "/sys/pk1/dn1/rrpc/response/123/x", uplinkAlinkOther, "pk1_dn1"},
		{dev, "/sys/pk1/dn2/rrpc/response/123", notUplink, ""},
		{dev, "/pk1/dn1/user/update", uplinkUser, "pk1_dn1"},
		{dev, "/pk1/dn1/user/a/b/c", uplinkUser, "pk1_dn1"},
		{dev, "/pk1/dn1/user/", notUplink, ""},
		{dev, "/sys/pk1/dn1/", notUplink, ""},
		{dev, "/sys/pk1/dn1", notUplink, ""},
		{dev, "/pk1/dn1/other", notUplink, ""},
		{dev, "/pk1/dn1/get", notUplink, ""},
		{dev, "/sys/pk1/dn2/thing/event/property/post", notUplink, ""}, // another device
		{dev, "/sys/pk2/dn1/thing/event/property/post", notUplink, ""},
		{dev, "/pk1/dn2/user/update", notUplink, ""},
		{dev, "/ext/session/pk1/dn1/combine/login", notUplink, ""},  // not a gateway
		{dev, "$oc/devices/pk1_dn1/sys/messages/up", notUplink, ""}, // the IoTDA dialect's topics
		{dev, "/shadow/update/pk1/dn1", notUplink, ""},
		{dev, "sys/pk1/dn1/thing/event/property/post", notUplink, ""},
		{gw, "/ext/session/gwp/gw1/combine/login", uplinkLogin, "gwp_gw1"},
		{gw, "/ext/session/gwp/gw1/combine/batch_login", uplinkBatchLogin, "gwp_gw1"},
		{gw, "/ext/session/gwp/gw1/combine/logout", uplinkLogout, "gwp_gw1"},
		{gw, "/ext/session/gwp/gw1/combine/batch_logout", uplinkBatchLogout, "gwp_gw1"},
		{gw, "/ext/session/gwp/gw1/combine/login_reply", notUplink, ""},
		{gw, "/sys/gwp/gw1/thing/topo/add", uplinkTopoAdd, "gwp_gw1"},
		{gw, "/sys/gwp/gw1/thing/topo/get", uplinkTopoGet, "gwp_gw1"},
		{gw, "/sys/gwp/gw1/thing/topo/delete", uplinkTopoDelete, "gwp_gw1"},
		{gw, "/sys/pk1/s1/thing/event/property/post", uplinkAlinkProperties, "pk1_s1"}, // a logged-in sub-device
		{gw, "/pk1/s1/user/up", uplinkUser, "pk1_s1"},
		{gw, "/ext/session/pk1/s1/combine/login", notUplink, ""},     // not for sub-devices
		{gw, "/sys/pk1/s2/thing/event/property/post", notUplink, ""}, // not logged in
		{reg, "/ext/register", notUplink, ""},
		{reg, "/sys/pk1/dn1/thing/event/property/post", notUplink, ""},
	}
	for _, tt := range pub {
		r, kind, ok := tt.c.mayPublish(tt.topic)
		if kind != tt.kind || ok != (tt.kind != notUplink) || ok && r.device != tt.dev {
			t.Errorf("%s mayPublish(%q) = %v %v %q, want %v %q", tt.c.device, tt.topic, kind, ok, r.device, tt.kind, tt.dev)
		}
	}
	sub := []struct {
		c      *conn
		filter string
		ok     bool
	}{
		{dev, "/sys/pk1/dn1/thing/event/property/post_reply", true},
		{dev, "/sys/pk1/dn1/thing/service/property/set", true},
		{dev, "/sys/pk1/dn1/thing/event/+/post_reply", true}, // the Node SDK's
		{dev, "/sys/pk1/dn1/#", true},
		{dev, "/sys/pk1/dn1/rrpc/request/+", true},
		{dev, "/pk1/dn1/user/get", true},
		{dev, "/pk1/dn1/user/#", true},
		{dev, "/pk1/dn1/#", false}, // reaches beyond user/
		{dev, "/sys/pk1/+/#", false},
		{dev, "/sys/+/dn1/#", false},
		{dev, "/sys/#", false},
		{dev, "#", false},
		{dev, "/+/+/user/#", false},
		{dev, "/sys/pk1/dn2/#", false},
		{dev, "/shadow/get/pk1/dn1", false},
		{dev, "/ext/session/pk1/dn1/combine/login_reply", false},
		{dev, "$share/g//sys/pk1/dn1/#", false},
		{gw, "/ext/session/gwp/gw1/combine/login_reply", true},
		{gw, "/ext/session/gwp/gw1/combine/#", true},
		{gw, "/ext/session/gwp/gw1/combine/login", false}, // an uplink
		{gw, "/sys/pk1/s1/thing/service/#", true},
		{gw, "/sys/pk1/s2/#", false},
		{reg, "/ext/register", false},
		{reg, "#", false},
	}
	for _, tt := range sub {
		if got := tt.c.mayReceive(tt.filter); got != tt.ok {
			t.Errorf("%s mayReceive(%q) = %v, want %v", tt.c.device, tt.filter, got, tt.ok)
		}
	}
}

func TestMQTTAlinkProperties(t *testing.T) {
	got, err := alinkProperties(json.RawMessage(`{"Power":{"value":"on","time":1524448722000},"WF":23.6,
		"light:Brightness":{"value":70,"time":1524448723000},"light:Color":"red","Pos":{"x":1,"y":2},
		"Odd":{"value":1,"unit":"m"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ServiceID != "default" || got[1].ServiceID != "light" {
		t.Fatalf("services %+v", got)
	}
	def, light := got[0], got[1]
	for name, want := range map[string]string{"Power": `"on"`, "WF": `23.6`, "Pos": `{"x":1,"y":2}`, "Odd": `{"value":1,"unit":"m"}`} {
		if string(def.Properties[name]) != want {
			t.Errorf("default.%s = %s, want %s", name, def.Properties[name], want)
		}
	}
	if !def.EventTime.Equal(time.UnixMilli(1524448722000)) {
		t.Errorf("default event time %v", def.EventTime)
	}
	if string(light.Properties["Brightness"]) != "70" || string(light.Properties["Color"]) != `"red"` ||
		!light.EventTime.Equal(time.UnixMilli(1524448723000)) {
		t.Errorf("light %+v", light)
	}
	for _, bad := range []string{`[]`, `"x"`, `{}`, `null`, `{":x":1}`, `{"m:":1}`, `{"T":1,"default:T":2}`} {
		if _, err := alinkProperties(json.RawMessage(bad)); err == nil {
			t.Errorf("params %s accepted", bad)
		}
	}
	var ts struct{ A, B jsonText }
	if err := json.Unmarshal([]byte(`{"A":1528018257135,"B":"1528018257135"}`), &ts); err != nil || ts.A != ts.B {
		t.Fatalf("timestamps %+v %v", ts, err)
	}
	if err := json.Unmarshal([]byte(`{"A":{}}`), &ts); err == nil {
		t.Fatal("an object as text")
	}
}
