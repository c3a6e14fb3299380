package registry

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"reflect"
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

// checkSameAsMarshal fails unless the hand encodings of rec, full and
// compact (with and without the header), are json.Marshal's of
// storedEvent's and compactEvent's fields, byte for byte (or both refuse
// it).
func checkSameAsMarshal(t *testing.T, rec eventRecord) {
	t.Helper()
	for _, form := range []struct {
		name                  string
		compact, headerInBody bool
		want                  any
	}{
		{"full", false, false, rec},
		{"compact", true, false, struct {
			Resource string      `json:"resource"`
			Event    string      `json:"event"`
			Header   EventHeader `json:"header"`
			Body     any         `json:"body"`
		}{rec.Resource, rec.Event, rec.Header, rec.Body}},
		{"compact, header in body", true, true, struct {
			Resource string `json:"resource"`
			Event    string `json:"event"`
			Body     any    `json:"body"`
		}{rec.Resource, rec.Event, rec.Body}},
	} {
		want, werr := json.Marshal(form.want)
		got, gerr := appendEventRecord(nil, &rec, form.compact, form.headerInBody)
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("%s: json.Marshal error %v, hand encoding error %v", form.name, werr, gerr)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("%s: hand encoding differs from json.Marshal:\n got %s\nwant %s", form.name, got, want)
		}
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

// TestEventRecordForms: an event reads back as it was recorded whatever
// form its record took: compact with the device body in binary (a device
// event whose header is its body's fields), compact with the header
// stored (an uplink, or a device event whose header differs), and the
// full JSON form for an id that is not 24 hex digits.
func TestEventRecordForms(t *testing.T) {
	at := time.Date(2026, 12, 7, 8, 9, 10, 123456789, time.UTC)
	tags := []EventTag{{Key: "k", Value: "<v>"}}
	sixty := int64(-60)
	// dev is a device event whose header is its body's device fields.
	dev := func(project, device, gateway string, timeout *int64, ext json.RawMessage, tags []EventTag) eventRecord {
		rec := eventRecordOf(device, "node-1", timeout, ext, tags, at)
		b := rec.Body.(*deviceEventBody)
		b.AppID, b.GatewayID = project, gateway
		rec.Header.AppID, rec.Header.GatewayID = project, gateway
		return rec
	}
	otherGateway := dev("p", "dev_1", "dev_1", nil, nil, tags)
	otherGateway.Header.GatewayID = "gw" // the header is not the body's
	uplink := eventRecordOf("dev_1", "node-1", nil, nil, tags, at)
	uplink.Resource, uplink.Event = ResourceDeviceMessage, EventReport
	uplink.Body = messageEventBody{ID: "m", Content: json.RawMessage(`{"x":1}`), Encoding: "none"}
	oddID := dev("p", "dev_1", "dev_1", nil, nil, tags)
	oddID.ID = "ABCDEF0123456789abcdef01" // upper case: not newEventID's
	const inBinary = eventHeaderInBody | eventBodyBinary
	for _, c := range []struct {
		name    string
		rec     eventRecord
		version byte
		flags   byte
	}{
		{"device event, gateway is the device", dev("p", "dev_1", "dev_1", nil, nil, tags), eventRecordCompact, inBinary},
		{"device event, a gateway, no tags", dev("p", "dev_1", "gw_1", nil, nil, nil), eventRecordCompact, inBinary},
		{"device event, empty tags", dev("p", "dev_1", "dev_1", nil, nil, []EventTag{}), eventRecordCompact, inBinary},
		{"device event, app not the project", dev("other", "dev_1", "dev_1", nil, nil, tags), eventRecordCompact, inBinary},
		{"device event, timeout and extension", dev("p", "d<\u2028>", "d<\u2028>", &sixty, json.RawMessage(` {"a": [1, "<x>"]} `),
			[]EventTag{{Key: "a", Value: ""}, {Key: "", Value: "b"}}), eventRecordCompact, inBinary},
		{"device event, header differs", otherGateway, eventRecordCompact, 0},
		{"uplink", uplink, eventRecordCompact, 0},
		{"id not hex", oddID, eventRecordTimed, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := encodeRecord("p", c.rec.Header.DeviceID, c.rec)
			if err != nil {
				t.Fatal(err)
			}
			v := append([]byte(nil), e.rec...)
			binary.BigEndian.PutUint64(v, 7)
			if v[8] != c.version || (c.version == eventRecordCompact && v[compactRecordHead-1] != c.flags) {
				t.Fatalf("record version %d flags %d, want %d %d", v[8], v[compactRecordHead-1], c.version, c.flags)
			}
			got, err := decodeEvent("p", 42, v)
			if err != nil {
				t.Fatal(err)
			}
			body, err := json.Marshal(c.rec.Body)
			if err != nil {
				t.Fatal(err)
			}
			want := Event{ID: c.rec.ID, Position: 42, Seq: 7, ProjectID: "p", Time: at, Resource: c.rec.Resource,
				Event: c.rec.Event, Header: c.rec.Header, Body: body}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("read back\n%+v\nwant\n%+v", got, want)
			}
			if ns, err := eventRecordTime(v); err != nil || ns != at.UnixNano() {
				t.Fatalf("record time %d (%v)", ns, err)
			}
		})
	}
	// The compact form stores a device event in fewer bytes.
	fromBody := dev("p", "dev_1", "dev_1", nil, nil, tags)
	full, err := appendEventRecord(nil, &fromBody, false, false)
	if err != nil {
		t.Fatal(err)
	}
	compact, err := encodeRecord("p", "dev_1", fromBody)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("device event: compact record %d bytes, full JSON %d", len(compact.rec), len(full))
	if len(compact.rec) >= 8+1+len(full)/3 {
		t.Fatalf("compact record %d bytes, full JSON %d", len(compact.rec), len(full))
	}
	// A compact record cut short, or with bytes after its body, is an
	// error, not a panic.
	for n := range len(compact.rec) {
		if _, err := decodeEvent("p", 1, compact.rec[:n]); err == nil {
			t.Fatalf("compact record cut to %d of %d bytes decoded", n, len(compact.rec))
		}
	}
	if _, err := decodeEvent("p", 1, append(compact.rec, 0)); err == nil {
		t.Fatal("compact record with a trailing byte decoded")
	}
	// A compact record of the JSON form with the header in the body (as
	// written before the binary form) still reads.
	js, err := appendEventRecord(nil, &fromBody, true, true)
	if err != nil {
		t.Fatal(err)
	}
	old := append(append(append([]byte(nil), compact.rec[:compactRecordHead-1]...), eventHeaderInBody), js...)
	got, err := decodeEvent("p", 1, old)
	if err != nil || got.Resource != ResourceDevice {
		t.Fatalf("JSON compact record read as %+v (%v)", got, err)
	}
	if !reflect.DeepEqual(got.Header, fromBody.Header) {
		t.Fatalf("header %+v, want %+v", got.Header, fromBody.Header)
	}
}

// FuzzEventBinaryBody: any device body round-trips through the binary
// form to the JSON its own encoder gives, and no byte string makes the
// decoder panic.
func FuzzEventBinaryBody(f *testing.F) {
	f.Add("p", "dev", "node", "dev", int64(5), []byte(`{"a":1}`), "k", "v", true, []byte{0x03})
	f.Add("", "\x00<>&\u2028", "\xff", "g", int64(-1), []byte(` [ ] `), "", "\"", false, []byte{})
	f.Fuzz(func(t *testing.T, app, dev, node, gw string, timeout int64, ext []byte, k, v string, withTag bool, junk []byte) {
		_, _, _, _ = decodeDeviceBodyBinary("p", junk) // must not panic
		var tags []EventTag
		if withTag {
			tags = []EventTag{{Key: k, Value: v}}
		}
		rec := eventRecordOf(dev, node, &timeout, ext, tags, time.Unix(0, 0).UTC())
		body := rec.Body.(*deviceEventBody)
		body.AppID, body.GatewayID = app, gw
		want, werr := body.appendJSON(nil)
		b := appendDeviceBodyBinary(nil, "p", &rec, body)
		resource, event, d, err := decodeDeviceBodyBinary("p", b)
		if err != nil || resource != rec.Resource || event != rec.Event {
			t.Fatalf("decode: %q %q %v", resource, event, err)
		}
		got, gerr := d.appendJSON(nil)
		if (werr != nil) != (gerr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("round trip:\n got %s (%v)\nwant %s (%v)", got, gerr, want, werr)
		}
	})
}
