package mqtt

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// Fuzz targets for the parsers a CONNECT or a PUBLISH feeds before (or
// instead of) any lookup. Seeds are the client ids, passwords, topics and
// payloads the tests and the reference use; testdata/fuzz holds more,
// taken from real client captures. `go test` runs every seed; test/fuzz.sh
// fuzzes.

// FuzzParseClientID: an IoTDA ClientId parses to fields that rebuild it
// exactly, or fails; its timestamp check never panics.
func FuzzParseClientID(f *testing.F) {
	for _, s := range []string{
		"D39564861q3gDa_0_0_2018072417", // reference §4.1
		"dev_0_0_2024010124",            // Huawei C SDK: not a date
		"meter_1_0_1_2024010124",
		"prod_node_0_1_2025041401",
		"dev_1_0_0", "_0_0_2024010100", "dev_2_0_2024010100", "dev_0_0_20240101xx",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseClientID(s)
		if err != nil {
			if c != (clientID{}) {
				t.Fatalf("parseClientID(%q) = %+v with error %v", s, c, err)
			}
			return
		}
		sign := "0"
		if c.TimeChecked {
			sign = "1"
		}
		if got := c.DeviceID + "_0_" + sign + "_" + c.Timestamp; got != s {
			t.Fatalf("parseClientID(%q) = %+v, which rebuilds %q", s, c, got)
		}
		if c.DeviceID == "" || len(c.Timestamp) != 10 || len(s) > maxClientIDLen {
			t.Fatalf("parseClientID(%q) accepted %+v", s, c)
		}
		now := time.Date(2024, 1, 1, 12, 0, 0, 0, time.UTC)
		if err := checkTimestamp(c.Timestamp, now, time.Hour); err == nil {
			ts, perr := time.Parse("2006010215", c.Timestamp)
			if perr != nil || now.Sub(ts) > 2*time.Hour || ts.Sub(now) > time.Hour {
				t.Fatalf("checkTimestamp(%q) accepted a time %v from %v", c.Timestamp, ts, now)
			}
		}
	})
}

// FuzzParseAliClientID: an Alibaba mqttClientId parses to a clientId part
// without '|' within its limit and parameters that were really sent, or
// fails with nothing parsed; the username split rebuilds its input.
func FuzzParseAliClientID(f *testing.F) {
	for _, s := range [][2]string{
		{"SN1928339|securemode=3,signmethod=hmacsha1,timestamp=1539421321846|", "device1&a1TESTPK001"},
		{"a1TESTPK001.dev1|timestamp=2524608000000,_v=sdk-c-3.0.1,securemode=3,signmethod=hmacsha256,lan=C,gw=0,ext=0|", "dev1&a1TESTPK001"},
		{"dev1.a1TESTPK001|random=8Ygb7ULYh53B6OA,authType=register,securemode=2,signmethod=hmacsha256,ext=3,|", "dev1&a1TESTPK001"},
		{"cid|AUTHTYPE=connwl,SecureMode=-2,_ss=1,ext=3,_v=sdk-c-4.x|", "dn&pk"},
		{"12345|securemode=3,signmethod=hmacsha1,timestamp=789|", "&pk"},
		{"x|timestamp=1,timestamp=2|", "dn&"},
		{"x|a|", ""},
		{"x|securemode=3|tail", "dn&pk&x"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, s, username string) {
		c, err := parseAliClientID(s)
		if err != nil {
			if c != (aliClientID{}) {
				t.Fatalf("parseAliClientID(%q) = %+v with error %v", s, c, err)
			}
		} else {
			if !isAlibaba(s, nil) {
				t.Fatalf("parseAliClientID accepted %q, which isAlibaba does not recognise", s)
			}
			if strings.Contains(c.ClientID, "|") || len(c.ClientID) > maxAliClientLen || len(s) > maxAliClientIDLen {
				t.Fatalf("parseAliClientID(%q): clientId %q", s, c.ClientID)
			}
			if !strings.HasPrefix(s, c.ClientID+"|") || !strings.HasSuffix(s, "|") {
				t.Fatalf("parseAliClientID(%q): clientId %q is not the part before the first '|'", s, c.ClientID)
			}
			sent := false
			for item := range strings.SplitSeq(s[len(c.ClientID)+1:], ",") {
				k, _, _ := strings.Cut(item, "=")
				sent = sent || strings.EqualFold(k, "timestamp")
			}
			if c.HasTimestamp != sent {
				t.Fatalf("parseAliClientID(%q): HasTimestamp %v", s, c.HasTimestamp)
			}
			for _, v := range []string{c.SecureMode, c.SignMethod, c.Timestamp, c.AuthType, c.Random} {
				if v != "" && !strings.Contains(s, "="+v) {
					t.Fatalf("parseAliClientID(%q): value %q was not sent", s, v)
				}
			}
		}
		dn, pk, ok := parseAliUsername([]byte(username))
		if ok && (dn == "" || pk == "" || dn+"&"+pk != username || strings.Contains(dn, "&")) {
			t.Fatalf("parseAliUsername(%q) = %q, %q", username, dn, pk)
		}
		if ok && !isAlibaba("", []byte(username)) {
			t.Fatalf("parseAliUsername accepted %q, which isAlibaba does not recognise", username)
		}
	})
}

// FuzzReadSign: a password is accepted as a sign only when it is the hex,
// in either case, of exactly one MAC of the method's hash.
func FuzzReadSign(f *testing.F) {
	f.Add("hmacsha1", "edabfd45469dec12cf3432dd6083c58dadffb4ca") // reference §5.3 Go sample
	f.Add("", "0123456789ABCDEF0123456789abcdef")
	f.Add("hmacsha256", strings.Repeat("aB", 32))
	f.Add("HmacMD5", "zz")
	f.Add("sha256", "00")
	f.Fuzz(func(t *testing.T, method, password string) {
		h, mac, r := readSign(method, []byte(password))
		if r != nil {
			if h != nil || mac != nil {
				t.Fatalf("readSign(%q, %q) refused (%v) yet returned a sign", method, password, r)
			}
			return
		}
		if h == nil || len(mac) != h().Size() {
			t.Fatalf("readSign(%q, %q): %d-byte sign", method, password, len(mac))
		}
		if got := hex.EncodeToString(mac); got != strings.ToLower(password) {
			t.Fatalf("readSign(%q, %q) decoded %s", method, password, got)
		}
	})
}

// FuzzTopics: every topic space splits a topic into an owner and a suffix
// that rebuild it; ACL decisions never panic and a device never owns
// another device's IoTDA topic.
func FuzzTopics(f *testing.F) {
	for _, s := range []string{
		"$oc/devices/dev_1/sys/messages/up",
		"$oc/devices/dev_1/sys/commands/response/request_id=c-1",
		"$oc/devices/dev_1/sys/properties/report",
		"$oc/devices/dev_1/sys/commands/#",
		"$oc/devices/+/sys/#",
		"$oc/devices/dev_1/user/a/b",
		"/sys/a1TESTPK001/dev1/thing/event/property/post",
		"/sys/gwpk/gw1/thing/topo/add",
		"/ext/session/gwpk/gw1/combine/batch_login",
		"/a1TESTPK001/dev1/user/get",
		"/a1TESTPK001/dev1/user/#",
		"#", "/", "//", "$oc/devices//x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, topic string) {
		prefixes := map[*space]string{huaweiSpace: devicesPrefix, aliSysSpace: "/sys/", aliSessionSpace: "/ext/session/"}
		for _, sp := range []*space{huaweiSpace, aliSysSpace, aliUserSpace, aliSessionSpace} {
			o, suffix, ok := sp.split(topic)
			if !ok {
				continue
			}
			var rebuilt string
			switch sp {
			case huaweiSpace:
				rebuilt = prefixes[sp] + o.a + "/" + suffix
			case aliUserSpace:
				rebuilt = "/" + o.a + "/" + o.b + "/user/" + suffix
			default:
				rebuilt = prefixes[sp] + o.a + "/" + o.b + "/" + suffix
			}
			if rebuilt != topic || strings.Contains(o.a, "/") || strings.Contains(o.b, "/") || o.a == "" {
				t.Fatalf("split(%q) = %+v, %q: rebuilds %q", topic, o, suffix, rebuilt)
			}
			sp.classify(suffix)
			sp.mayReceive(suffix)
			if id := requestID(suffix); !strings.HasSuffix(suffix, id) {
				t.Fatalf("requestID(%q) = %q", suffix, id)
			}
		}
		if rest, ok := strings.CutPrefix(topic, devicesPrefix); ok {
			dev, _, _ := strings.Cut(rest, "/")
			if _, ok := huaweiOwnSuffix(dev+"x", topic); ok {
				t.Fatalf("device %sx owns %q", dev, topic)
			}
			if huaweiMayReceive(dev+"x", topic) {
				t.Fatalf("device %sx may receive %q", dev, topic)
			}
		}
		if !strings.ContainsAny(topic, "+#*") && topic != "" {
			if !overlaps(topic, topic) {
				t.Fatalf("overlaps(%q, itself) = false", topic)
			}
		}
	})
}

// FuzzAlinkPayload: an Alink request body, as a device or a gateway
// publishes it, decodes to a request or an errAlinkParams error; its
// params decode (or fail) as every handler reads them; properties map to
// sorted, distinct, non-empty services holding every property sent.
func FuzzAlinkPayload(f *testing.F) {
	for _, s := range []string{
		`{"id":"123","version":"1.0","params":{"Temperature":21.5,"mod:Power":{"value":"on","time":1524448722000}},"method":"thing.event.property.post"}`,
		`{"id":"123","version":"1.0","sys":{"ack":0},"params":[{"deviceName":"2001","productKey":"a1Hhs4E2xUG"}],"method":"thing.sub.register"}`,
		`{"id":"1|exp-topic|x","version":"1.0","params":[{"deviceName":"2001","productKey":"a1Hhs4E2xUG","sign":"edabfd45469dec12cf3432dd6083c58dadffb4ca","signmethod":"hmacSha1","timestamp":1528018257135,"clientId":"2001"}],"method":"thing.topo.add"}`,
		`{"id":"123","params":{"productKey":"a1Hhs4E2xUG","deviceName":"2001","clientId":"2001","timestamp":"1528018257135","signMethod":"hmacsha1","sign":"edabfd45469dec12cf3432dd6083c58dadffb4ca","cleanSession":"true"}}`,
		`{"id":7,"version":"1.0","params":{"signMethod":"hmacSha256","deviceList":[{"productKey":"pk","deviceName":"dn","clientId":"pk&dn","timestamp":"1","cleanSession":"false","sign":"00"}]}}`,
		`{"id":"1","params":{"struct":{"a":1},"t":{"value":1,"time":"x"},"":1}}`,
		`{"params":{"a:":1}}`, `{"params":null}`, `[]`, `{"id":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, payload []byte) {
		req, err := parseAlinkRequest(payload)
		if err != nil {
			if !errors.Is(err, errAlinkParams) {
				t.Fatalf("parseAlinkRequest error %v does not wrap errAlinkParams", err)
			}
			return
		}
		req.wantsReply()
		var subs []subSign
		_ = json.Unmarshal(req.Params, &subs)
		var batch struct {
			SignMethod string    `json:"signMethod"`
			DeviceList []subSign `json:"deviceList"`
		}
		_ = json.Unmarshal(req.Params, &batch)
		var one subSign
		if json.Unmarshal(req.Params, &one) == nil && one.Timestamp != nil && !strings.Contains(string(req.Params), `\`) &&
			!strings.Contains(string(req.Params), string(*one.Timestamp)) {
			// A timestamp is kept as the text the device signed.
			t.Fatalf("timestamp kept as %q, not sent in %s", *one.Timestamp, req.Params)
		}
		services, err := alinkProperties(req.Params)
		if err != nil {
			if services != nil || !errors.Is(err, errAlinkParams) {
				t.Fatalf("alinkProperties = %v, %v", services, err)
			}
			return
		}
		var props map[string]json.RawMessage
		if err := json.Unmarshal(req.Params, &props); err != nil {
			t.Fatalf("alinkProperties accepted params that are not an object: %v", err)
		}
		n := 0
		for i, s := range services {
			if s.ServiceID == "" || len(s.Properties) == 0 {
				t.Fatalf("service %+v", s)
			}
			if i > 0 && services[i-1].ServiceID >= s.ServiceID {
				t.Fatalf("services %q then %q: not sorted and distinct", services[i-1].ServiceID, s.ServiceID)
			}
			n += len(s.Properties)
		}
		if n != len(props) {
			t.Fatalf("%d properties sent, %d mapped", len(props), n)
		}
	})
}
