package registry

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// eventRecordOf is a record with a device body built from the fields given.
func eventRecordOf(s1, s2 string, timeout *int64, ext json.RawMessage, tags []EventTag, at time.Time) eventRecord {
	body := &deviceEventBody{AppID: "p", DeviceID: s1, NodeID: s2, GatewayID: s1, DeviceName: s2, Description: s1,
		ProductID: "prod", Status: StatusOnline, CreateTime: "20261207T080000Z", ActiveTime: s2,
		AuthInfo:      deviceEventAuth{AuthType: AuthSecret, SecureAccess: s1 != "", Timeout: timeout},
		ExtensionInfo: ext, Tags: tags}
	return eventRecord{ID: "0123456789abcdef01234567", Time: at, Resource: ResourceDevice, Event: EventCreate,
		Header: EventHeader{AppID: "p", DeviceID: s1, NodeID: s2, ProductID: "prod", GatewayID: s2, Tags: tags}, Body: body}
}

// checkSameAsMarshal fails unless the hand encoding of rec is
// json.Marshal's, byte for byte (or both refuse it).
func checkSameAsMarshal(t *testing.T, rec eventRecord) {
	t.Helper()
	want, werr := json.Marshal(rec)
	got, gerr := appendEventRecord(nil, &rec)
	if (werr != nil) != (gerr != nil) {
		t.Fatalf("json.Marshal error %v, hand encoding error %v", werr, gerr)
	}
	if werr == nil && !bytes.Equal(got, want) {
		t.Fatalf("hand encoding differs from json.Marshal:\n got %s\nwant %s", got, want)
	}
}

func TestEventRecordJSONIsMarshals(t *testing.T) {
	sixty := int64(60)
	zero := int64(0)
	at := time.Date(2026, 12, 7, 8, 9, 10, 123456789, time.UTC)
	for _, c := range []struct {
		name       string
		s1, s2     string
		timeout    *int64
		ext        json.RawMessage
		tags       []EventTag
		at         time.Time
		otherBody  any
		otherBodyX bool
	}{
		{name: "plain", s1: "dev_1", s2: "node-1", at: at, tags: []EventTag{}},
		{name: "empty optional fields", at: time.Unix(0, 0).UTC()},
		{name: "escapes", s1: "q\"b\\s/\n\r\t\b\f\x00\x1f\x7f", s2: "<a>&amp;", at: at},
		{name: "unicode", s1: "温度 ✓ \u2028 \u2029 😀", s2: "bad \xff\xfe utf8 \xe2\x82", at: at},
		{name: "timeout and extension", s1: "d", s2: "n", timeout: &sixty, ext: json.RawMessage(` { "a" : [1, 2, "<x>&"], "b":{} } `),
			tags: []EventTag{{Key: "k", Value: "v"}, {Key: "<k2>", Value: ""}}, at: at},
		{name: "zero timeout", s1: "d", timeout: &zero, at: at.In(time.FixedZone("x", 3600))},
		{name: "invalid extension", s1: "d", ext: json.RawMessage(`{"a":`), at: at},
		{name: "year out of range", s1: "d", at: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkSameAsMarshal(t, eventRecordOf(c.s1, c.s2, c.timeout, c.ext, c.tags, c.at))
		})
	}
	// Bodies without their own encoder go through encoding/json.
	rec := eventRecordOf("d", "n", nil, nil, nil, at)
	rec.Body = messageEventBody{ID: "m", Content: json.RawMessage(`{"x": 1}`), Encoding: "none"}
	checkSameAsMarshal(t, rec)
}

func FuzzEventRecordJSON(f *testing.F) {
	f.Add("dev", "node", int64(5), []byte(`{"a":1}`), "k", "v", int64(1765000000123456789))
	f.Add("\x00<>&\u2028", "\xff", int64(-1), []byte(` [ ] `), "", "\"", int64(0))
	f.Fuzz(func(t *testing.T, s1, s2 string, timeout int64, ext []byte, k, v string, ns int64) {
		tags := []EventTag{{Key: k, Value: v}}
		checkSameAsMarshal(t, eventRecordOf(s1, s2, &timeout, ext, tags, time.Unix(0, ns).UTC()))
	})
}
