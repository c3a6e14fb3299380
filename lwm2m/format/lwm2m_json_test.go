package format

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// deviceLwM2MJSON is the Read /3/0 example of OMA-TS-LightweightM2M-V1_0
// §6.4.4 (application/vnd.oma.lwm2m+json).
const deviceLwM2MJSON = `{"bn":"/3/0/",
"e":[
{"n":"0","sv":"Open Mobile Alliance"},
{"n":"1","sv":"Lightweight M2M Client"},
{"n":"2","sv":"345000123"},
{"n":"3","sv":"1.0"},
{"n":"6/0","v":1},
{"n":"6/1","v":5},
{"n":"7/0","v":3800},
{"n":"7/1","v":5000},
{"n":"8/0","v":125},
{"n":"8/1","v":900},
{"n":"9","v":100},
{"n":"10","v":15},
{"n":"11/0","v":0},
{"n":"13","v":1367491215},
{"n":"14","sv":"+02:00"},
{"n":"16","sv":"U"}]
}`

func TestLwM2MJSONDeviceExact(t *testing.T) {
	base := NewPath(3, 0)
	for _, cf := range []uint16{FormatLwM2MJSON, FormatLwM2MJSONLegacy} {
		got, err := Decode(cf, base, []byte(deviceLwM2MJSON), DefaultModel())
		if err != nil {
			t.Fatal(err)
		}
		checkRecords(t, "decode", got, deviceRecords())
		enc, err := Encode(cf, base, deviceRecords())
		if err != nil {
			t.Fatal(err)
		}
		if want := compactJSON(t, deviceLwM2MJSON); !bytes.Equal(enc, want) {
			t.Errorf("encode:\n got %s\nwant %s", enc, want)
		}
	}
}

func TestLwM2MJSONExamples(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		payload string
		recs    []Record
	}{
		{
			// Notify with historical values (TS 1.0 §6.4.4 style).
			"timestamped", "/3303/0/5700",
			`{"bn":"/3303/0/5700","bt":25462634,"e":[{"v":22.4,"t":-5},{"v":22.9,"t":-30},{"v":24.1}]}`,
			[]Record{
				timedRec("/3303/0/5700", FloatValue(22.4), 25462634-5),
				timedRec("/3303/0/5700", FloatValue(22.9), 25462634-30),
				timedRec("/3303/0/5700", FloatValue(24.1), 25462634),
			},
		},
		{
			// No "bn": names relative to the request path; "e" may come
			// first; unknown members ignored.
			"implicit base", "/1/0",
			`{"e":[{"n":"1","v":300},{"n":"6","bv":true},{"n":"10","ov":"11:0"},{"n":"/1/0/7","sv":"U"}],"x":1}`,
			[]Record{
				rec("/1/0/1", IntegerValue(300)),
				rec("/1/0/6", BooleanValue(true)),
				rec("/1/0/10", ObjLinkValue(11, 0)),
				rec("/1/0/7", StringValue("U")),
			},
		},
		{
			"single resource without name", "/3/0/9", `{"e":[{"v":100}]}`,
			[]Record{rec("/3/0/9", IntegerValue(100))},
		},
		{
			// Opaque resources travel as base64 in "sv".
			"opaque", "/0/0", `{"bn":"/0/0/","e":[{"n":"3","sv":"AQID"},{"n":"0","sv":"coaps://x"}]}`,
			[]Record{rec("/0/0/3", OpaqueValue([]byte{1, 2, 3})), rec("/0/0/0", StringValue("coaps://x"))},
		},
		{"no entries", "/3/0", `{"e":[]}`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(FormatLwM2MJSON, mustPath(t, tc.base), []byte(tc.payload), DefaultModel())
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, "decode", got, tc.recs)
		})
	}
}

func TestLwM2MJSONDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		payload string
		want    error
		msg     string
	}{
		{"array", "/", `[]`, ErrMalformed, `want "{"`},
		{"no e", "/3/0", `{"bn":"/3/0/"}`, ErrMalformed, `no "e" array`},
		{"e not array", "/3/0", `{"e":{}}`, ErrMalformed, `want "["`},
		{"entry not object", "/3/0", `{"e":[1]}`, ErrMalformed, `want "{"`},
		{"nested member", "/3/0", `{"x":[1],"e":[]}`, ErrMalformed, "nested"},
		{"duplicate key", "/3/0", `{"e":[],"e":[]}`, ErrMalformed, `duplicate key "e"`},
		{"duplicate entry key", "/3/0", `{"e":[{"n":"0","n":"1"}]}`, ErrMalformed, `duplicate key "n"`},
		{"no value", "/3/0", `{"e":[{"n":"0"}]}`, ErrMalformed, "entry 0 has no value"},
		{"two values", "/3/0", `{"e":[{"n":"0","sv":"a","v":1}]}`, ErrMalformed, "more than one value"},
		{"sv not string", "/3/0", `{"e":[{"n":"0","sv":1}]}`, ErrMalformed, `"sv" must be a string`},
		{"v not number", "/3/0", `{"e":[{"n":"9","v":"1"}]}`, ErrMalformed, `"v" must be a number`},
		{"bv not bool", "/3/0", `{"e":[{"n":"9","bv":"1"}]}`, ErrMalformed, `"bv" must be a boolean`},
		{"bad ov", "/3/0", `{"e":[{"n":"9","ov":"1"}]}`, ErrMalformed, "ov: object link"},
		{"bn not string", "/3/0", `{"bn":1,"e":[]}`, ErrMalformed, "bn must be a string"},
		{"bad opaque", "/0/0", `{"e":[{"n":"3","sv":"@@"}]}`, ErrMalformed, "opaque base64"},
		{"bad name", "/3/0", `{"e":[{"n":"x","sv":"a"}]}`, ErrMalformed, `name "/3/0/x"`},
		{"outside base", "/3/0", `{"bn":"/4/0/","e":[{"n":"0","v":1}]}`, ErrInvalidPath, "not under base"},
		{"kind mismatch", "/3/0", `{"e":[{"n":"9","v":0.5}]}`, ErrKindMismatch, "does not fit Integer"},
		{"trailing", "/3/0", `{"e":[]}{}`, ErrMalformed, "after top-level value"},
		{"invalid utf8", "/3/0", "{\"e\":[{\"n\":\"0\",\"sv\":\"\xc3\"}]}", ErrMalformed, "invalid UTF-8 at offset 21"},
		{"time sum overflow", "/3/0", `{"bt":-1.7e308,"e":[{"n":"9","v":1,"t":-1.7e308}]}`, ErrMalformed, "overflows"},
		{"truncated", "/3/0", `{"e":[{"n":"9","v":1}`, ErrMalformed, "unexpected end of input"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(FormatLwM2MJSON, mustPath(t, tc.base), []byte(tc.payload), DefaultModel())
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v (records %v), want %v", err, got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}
