package mqtt

import (
	"testing"
	"time"
)

func TestMQTTParseClientID(t *testing.T) {
	tests := []struct {
		in      string
		dev, ts string
		checked bool
		ok      bool
	}{
		{"D39564861q3gDa_0_0_2018072417", "D39564861q3gDa", "2018072417", false, true},
		{"prod_node_0_1_2025041401", "prod_node", "2025041401", true, true}, // '_' in the device id
		{"dev_0_0_2024010124", "dev", "2024010124", false, true},            // C SDK non-date, sign_type 0
		{"dev_2_0_2025041401", "", "", false, false},                        // node-id identity not supported
		{"dev_0_2_2025041401", "", "", false, false},                        // SM3 not supported
		{"dev_0_0_202504140", "", "", false, false},                         // 9 digits
		{"dev_0_0_20250414011", "", "", false, false},                       // 11 digits
		{"dev_0_0_2025O41401", "", "", false, false},                        // letter O
		{"_0_0_2025041401", "", "", false, false},                           // no device
		{"dev_0_2025041401", "", "", false, false},                          // field missing
		{"dev", "", "", false, false},
		{"", "", "", false, false},
		{string(make([]byte, 300)), "", "", false, false},
	}
	for _, tt := range tests {
		c, err := parseClientID(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("parseClientID(%q) error %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && (c.DeviceID != tt.dev || c.Timestamp != tt.ts || c.TimeChecked != tt.checked) {
			t.Errorf("parseClientID(%q) = %+v", tt.in, c)
		}
	}
}

func TestMQTTCheckTimestamp(t *testing.T) {
	now := time.Date(2025, 4, 14, 1, 30, 0, 0, time.UTC)
	tests := []struct {
		ts    string
		skew  time.Duration
		stale bool
		bad   bool
	}{
		{"2025041401", time.Hour, false, false}, // the current hour
		{"2025041400", time.Hour, false, false}, // last hour, 30 min past its end
		{"2025041323", time.Hour, true, false},  // 1.5 h past its end
		{"2025041402", time.Hour, false, false}, // next hour, starts in 30 min
		{"2025041403", time.Hour, true, false},  // starts in 1.5 h
		{"2025041400", time.Minute, true, false},
		{"2024010124", time.Hour, false, true}, // hour 24 is no hour
	}
	for _, tt := range tests {
		err := checkTimestamp(tt.ts, now, tt.skew)
		switch {
		case tt.bad && (err == nil || err == errStaleTimestamp):
			t.Errorf("%s: %v, want a format error", tt.ts, err)
		case tt.stale && err != errStaleTimestamp:
			t.Errorf("%s skew %v: %v, want stale", tt.ts, tt.skew, err)
		case !tt.bad && !tt.stale && err != nil:
			t.Errorf("%s skew %v: %v, want ok", tt.ts, tt.skew, err)
		}
	}
}

// huaweiConn is an IoTDA device's connection state, as authHook makes it.
func huaweiConn(id string) *conn {
	return &conn{device: id, self: owner{a: id}, spaces: huaweiSpaces}
}

func TestMQTTTopicACL(t *testing.T) {
	const me = "dev_1"
	c := huaweiConn(me)
	pub := []struct {
		topic string
		ok    bool
	}{
		{"$oc/devices/dev_1/sys/messages/up", true},
		{"$oc/devices/dev_1/sys/properties/report", true},
		{"$oc/devices/dev_1/sys/commands/response/request_id=abc", true},
		{"$oc/devices/dev_1/sys/events/up", true},
		{"$oc/devices/dev_1/sys/properties/set/response/request_id=1", true},
		{"$oc/devices/dev_1/sys/properties/get/response/request_id=1", true},
		{"$oc/devices/dev_1/sys/shadow/get/request_id=1", true},
		{"$oc/devices/dev_1/user/anything/deeper", true},
		{"$oc/devices/dev_1/user/", false},
		{"$oc/devices/dev_1/sys/commands/response/request_id=", false},
		{"$oc/devices/dev_1/sys/commands/response/request_id=a/b", false},
		{"$oc/devices/dev_1/sys/messages/down", false}, // a downlink
		{"$oc/devices/dev_1/sys/commands/request_id=1", false},
		{"$oc/devices/dev_1/sys/other", false},
		{"$oc/devices/dev_1", false},
		{"$oc/devices/dev_2/sys/messages/up", false}, // another device
		{"$oc/devices/dev_10/sys/messages/up", false},
		{"$oc/devices/dev/sys/messages/up", false},
		{"other/topic", false},
		{"", false},
	}
	for _, tt := range pub {
		if _, _, got := c.mayPublish(tt.topic); got != tt.ok {
			t.Errorf("mayPublish(%q) = %v, want %v", tt.topic, got, tt.ok)
		}
	}
	sub := []struct {
		filter string
		ok     bool
	}{
		{"$oc/devices/dev_1/sys/messages/down", true},
		{"$oc/devices/dev_1/sys/commands/#", true}, // what the SDKs subscribe
		{"$oc/devices/dev_1/sys/commands/request_id=7", true},
		{"$oc/devices/dev_1/sys/commands/+", true},
		{"$oc/devices/dev_1/sys/properties/set/#", true},
		{"$oc/devices/dev_1/sys/properties/get/#", true},
		{"$oc/devices/dev_1/sys/shadow/get/response/#", true},
		{"$oc/devices/dev_1/sys/events/down", true},
		{"$oc/devices/dev_1/sys/#", true},
		{"$oc/devices/dev_1/#", true},
		{"$oc/devices/dev_1/+/messages/down", true},
		{"$oc/devices/dev_1/user/a/b", true},
		{"$oc/devices/dev_1/user/#", true},
		{"$oc/devices/dev_1/sys/messages/down/#", true}, // '#' matches the parent level too
		{"$oc/devices/dev_1/sys/messages/up", false},    // an uplink
		{"$oc/devices/dev_1/sys/commands/response/#", false},
		{"$oc/devices/dev_1/sys/commands/request_id=7/x", false},
		{"$oc/devices/dev_1/user", false},
		{"$oc/devices/dev_1/user/", false},
		{"$oc/devices/dev_1/other/#", false},
		{"$oc/devices/dev_2/sys/#", false},
		{"$oc/devices/+/sys/#", false},
		{"$oc/devices/#", false},
		{"$oc/#", false},
		{"#", false},
		{"+/devices/dev_1/sys/#", false},
		{"$share/g/$oc/devices/dev_1/sys/#", false},
		{"$SYS/#", false},
	}
	for _, tt := range sub {
		if got := c.mayReceive(tt.filter); got != tt.ok {
			t.Errorf("mayReceive(%q) = %v, want %v", tt.filter, got, tt.ok)
		}
	}
}

func TestMQTTParseUplink(t *testing.T) {
	c := huaweiConn("dev_1")
	r, kind, _ := c.mayPublish("$oc/devices/dev_1/sys/commands/response/request_id=c-1")
	if kind != uplinkCommandResponse || requestID(r.suffix) != "c-1" || r.device != "dev_1" {
		t.Fatalf("got %v %+v", kind, r)
	}
	if _, kind, _ := c.mayPublish("$oc/devices/dev_1/user/x"); kind != uplinkUser {
		t.Fatalf("user topic: %v", kind)
	}
}

func TestMQTTACLAllocatesNothing(t *testing.T) {
	c := huaweiConn("dev_1")
	gw := &conn{device: "gw", self: owner{"pk", "gw"}, spaces: aliGatewaySpaces, gateway: true,
		subs: map[owner]subSession{{"pk", "s1"}: {device: "pk_s1"}}}
	n := testing.AllocsPerRun(100, func() {
		c.mayPublish("$oc/devices/dev_1/sys/commands/response/request_id=abc")
		c.mayReceive("$oc/devices/dev_1/sys/shadow/get/response/#")
		c.mayReceive("$oc/devices/+/sys/#")
		gw.mayPublish("/sys/pk/s1/thing/event/property/post")
		gw.mayPublish("/pk/gw/user/up")
		gw.mayReceive("/ext/session/pk/gw/combine/#")
		gw.mayReceive("/sys/pk/+/#")
	})
	if n != 0 {
		t.Fatalf("ACL checks allocate %v times per run", n)
	}
}
