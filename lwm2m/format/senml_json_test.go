package format

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

// deviceSenMLJSON is the Read /3/0 example of OMA-TS-LightweightM2M_Core-
// V1_1 §7.4.4 (SenML JSON).
const deviceSenMLJSON = `[{"bn":"/3/0/","n":"0","vs":"Open Mobile Alliance"},
{"n":"1","vs":"Lightweight M2M Client"},
{"n":"2","vs":"345000123"},
{"n":"3","vs":"1.0"},
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
{"n":"14","vs":"+02:00"},
{"n":"16","vs":"U"}]`

func compactJSON(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(s)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestSenMLJSONDeviceExact(t *testing.T) {
	base := NewPath(3, 0)
	got, err := Decode(FormatSenMLJSON, base, []byte(deviceSenMLJSON), DefaultModel())
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, "decode", got, deviceRecords())
	enc, err := Encode(FormatSenMLJSON, base, deviceRecords())
	if err != nil {
		t.Fatal(err)
	}
	if want := compactJSON(t, deviceSenMLJSON); !bytes.Equal(enc, want) {
		t.Errorf("encode:\n got %s\nwant %s", enc, want)
	}
}

func TestSenMLJSONExamples(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		payload string
		recs    []Record
	}{
		{
			// LwM2M 1.1 §7.4.4: timestamped values in a Notify.
			"timestamped", "/3303/0/5700",
			`[{"bn":"/3303/0/5700","bt":1.276020076001e+09,"v":22.4,"t":-5},{"v":22.9,"t":-30},{"v":24.1,"t":-50}]`,
			[]Record{
				timedRec("/3303/0/5700", FloatValue(22.4), 1.276020076001e+09-5),
				timedRec("/3303/0/5700", FloatValue(22.9), 1.276020076001e+09-30),
				timedRec("/3303/0/5700", FloatValue(24.1), 1.276020076001e+09-50),
			},
		},
		{
			// Read-Composite request body: names only.
			"read composite", "/",
			`[{"n":"/3/0/0"},{"n":"/3/0/9"},{"n":"/1/0"}]`,
			[]Record{rec("/3/0/0", Value{}), rec("/3/0/9", Value{}), rec("/1/0", Value{})},
		},
		{
			// Write-Composite with a model-typed numbers: Time from a float
			// literal, Unsigned and Integer.
			"write composite", "/",
			`[{"n":"/3/0/13","v":1.599E9},{"n":"/1/0/17","v":3},{"bn":"/1/0/","n":"1","v":300.0}]`,
			[]Record{
				rec("/3/0/13", Value{kind: KindTime, bits: 1599000000}),
				rec("/1/0/17", UnsignedValue(3)),
				rec("/1/0/1", IntegerValue(300)),
			},
		},
		{
			"all value labels", "/9999/0",
			`[{"bn":"/9999/0/","n":"1","vs":"a"},{"n":"5","vb":false},{"n":"6","vd":"AAEC_w"},{"n":"8","vlo":"1:2"},{"n":"3","v":18446744073709551615}]`,
			[]Record{
				rec("/9999/0/1", StringValue("a")),
				rec("/9999/0/5", BooleanValue(false)),
				rec("/9999/0/6", OpaqueValue([]byte{0, 1, 2, 0xff})),
				rec("/9999/0/8", ObjLinkValue(1, 2)),
				rec("/9999/0/3", UnsignedValue(math.MaxUint64)),
			},
		},
		{
			// Unknown labels are ignored, units too; vd also in padded
			// standard base64.
			"ignored labels", "/",
			`[{"n":"/9999/0/6","vd":"AAEC/w==","u":"Cel","x-vendor":1,"ut":60,"bver":10}]`,
			[]Record{rec("/9999/0/6", OpaqueValue([]byte{0, 1, 2, 0xff}))},
		},
		{
			// Without a model kind, JSON numbers keep their written form.
			"no model", "/",
			`[{"n":"/77/0/1","v":2},{"n":"/77/0/2","v":2.0},{"n":"/77/0/3","v":-9223372036854775808},{"n":"/77/0/4","v":1e400000000}]`,
			nil, // checked below: 1e400000000 overflows
		},
		{"empty pack", "/", `[]`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(FormatSenMLJSON, mustPath(t, tc.base), []byte(tc.payload), testModel())
			if tc.name == "no model" {
				if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "out of range") {
					t.Fatalf("error = %v, want out of range", err)
				}
				got, err = Decode(FormatSenMLJSON, mustPath(t, tc.base), []byte(strings.Replace(tc.payload, `1e400000000`, `1e4`, 1)), nil)
				tc.recs = []Record{
					rec("/77/0/1", IntegerValue(2)),
					rec("/77/0/2", FloatValue(2)),
					rec("/77/0/3", IntegerValue(math.MinInt64)),
					rec("/77/0/4", FloatValue(1e4)),
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, "decode", got, tc.recs)
		})
	}
}

// TestSenMLJSONRFC8428 reads RFC 8428's own examples (names are URNs, not
// LwM2M paths, so only the pack level is checked).
func TestSenMLJSONRFC8428(t *testing.T) {
	recs, err := readSenMLJSON([]byte(`[
     {"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","t":0,"u":"V","v":120.1},
     {"n":"current","t":0,"u":"A","v":1.2}
   ]`))
	if err != nil {
		t.Fatal(err)
	}
	want := []senmlRecord{
		{name: "urn:dev:ow:10e2073a01080063:voltage", value: FloatValue(120.1), carrier: carrierNumber},
		{name: "urn:dev:ow:10e2073a01080063:current", value: FloatValue(1.2), carrier: carrierNumber},
	}
	if len(recs) != len(want) {
		t.Fatalf("got %d records", len(recs))
	}
	for i := range want {
		if recs[i] != want[i] {
			t.Errorf("record %d = %+v, want %+v", i, recs[i], want[i])
		}
	}
	recs, err = readSenMLJSON([]byte(rfc8428MultiJSON))
	if err != nil {
		t.Fatal(err)
	}
	checkRFC8428Multi(t, recs)
}

// rfc8428MultiJSON is the RFC 8428 §5.1.2 multiple-measurement example,
// whose CBOR form is §6's example.
const rfc8428MultiJSON = `[
     {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
      "bu":"A","bver":5,
      "n":"voltage","u":"V","v":120.1},
     {"n":"current","t":-5,"v":1.2},
     {"n":"current","t":-4,"v":1.3},
     {"n":"current","t":-3,"v":1.4},
     {"n":"current","t":-2,"v":1.5},
     {"n":"current","t":-1,"v":1.6},
     {"n":"current","v":1.7}
   ]`

func checkRFC8428Multi(t *testing.T, recs []senmlRecord) {
	t.Helper()
	const bt = 1.276020076001e+09
	values := []float64{120.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7}
	times := []float64{0, -5, -4, -3, -2, -1, 0}
	if len(recs) != len(values) {
		t.Fatalf("got %d records, want %d", len(recs), len(values))
	}
	for i, r := range recs {
		name := "urn:dev:ow:10e2073a0108006:current"
		if i == 0 {
			name = "urn:dev:ow:10e2073a0108006:voltage"
		}
		if r.name != name || r.value != FloatValue(values[i]) || r.time != bt+times[i] {
			t.Errorf("record %d = %q %v t=%v, want %q %v t=%v", i, r.name, r.value, r.time, name, values[i], bt+times[i])
		}
	}
}

func TestSenMLJSONDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		payload string
		want    error
		msg     string
	}{
		{"empty", "/", ``, ErrMalformed, "unexpected end of input"},
		{"object not array", "/", `{"n":"/3/0/0"}`, ErrMalformed, `want "[", got '{'`},
		{"record not object", "/", `["x"]`, ErrMalformed, `want "{", got string "x"`},
		{"unterminated", "/", `[{"n":"/3/0/0","vs":"a"}`, ErrMalformed, "unexpected end of input"},
		{"syntax", "/", `[{"n":"/3/0/0",}]`, ErrMalformed, "invalid character"},
		{"trailing data", "/", `[] []`, ErrMalformed, "after top-level value"},
		{"trailing garbage", "/", `[]x`, ErrMalformed, "after top-level value"},
		{"nested value", "/", `[{"n":"/3/0/0","vs":["a"]}]`, ErrMalformed, `label "vs": nested '['`},
		{"nested unknown", "/", `[{"n":"/3/0/0","x":{"a":1}}]`, ErrMalformed, "nested"},
		{"duplicate label", "/", `[{"n":"/3/0/0","n":"/3/0/1"}]`, ErrMalformed, `duplicate label "n"`},
		{"null value", "/", `[{"n":"/3/0/0","vs":null}]`, ErrMalformed, "null is not allowed"},
		{"name not string", "/", `[{"n":3}]`, ErrMalformed, `label "n" must be a string, got a number`},
		{"v not number", "/", `[{"n":"/3/0/9","v":"1"}]`, ErrMalformed, `label "v" must be a number`},
		{"vb not bool", "/", `[{"n":"/3/0/9","vb":1}]`, ErrMalformed, `label "vb" must be a boolean`},
		{"two values", "/", `[{"n":"/3/0/9","v":1,"vs":"1"}]`, ErrMalformed, "more than one value"},
		{"bad vd", "/", `[{"n":"/3/0/9","vd":"!!"}]`, ErrMalformed, "vd: base64"},
		{"bad vlo", "/", `[{"n":"/3/0/9","vlo":"3-0"}]`, ErrMalformed, "vlo: object link"},
		{"vlo out of range", "/", `[{"n":"/3/0/9","vlo":"70000:0"}]`, ErrMalformed, "0..65535"},
		{"bad name", "/", `[{"n":"3/0/0","vs":"a"}]`, ErrMalformed, `name "3/0/0"`},
		{"missing name", "/", `[{"vs":"a"}]`, ErrMalformed, `name ""`},
		{"case-sensitive labels", "/", `[{"N":"/3/0/0","vs":"a"}]`, ErrMalformed, `name ""`},
		{"deep name", "/", `[{"n":"/3/0/0/0/0","vs":"a"}]`, ErrMalformed, "more than 4 levels"},
		{"not under base", "/3/0", `[{"n":"/3/1/0","vs":"a"}]`, ErrInvalidPath, "not under base /3/0"},
		{"integer model with fraction", "/", `[{"n":"/3/0/9","v":1.5}]`, ErrKindMismatch, "Float 1.5 does not fit Integer"},
		{"unsigned model negative", "/", `[{"n":"/1/0/17","v":-1}]`, ErrKindMismatch, "does not fit Unsigned"},
		{"integer too large", "/", `[{"n":"/3/0/9","v":1e19}]`, ErrKindMismatch, "does not fit Integer"},
		{"newer version", "/", `[{"bver":11,"n":"/3/0/9","v":1}]`, ErrUnsupportedFormat, "SenML version 11"},
		{"bad version", "/", `[{"bver":1.5,"n":"/3/0/9","v":1}]`, ErrMalformed, "not a positive integer"},
		{"base value", "/", `[{"bv":1,"n":"/3/0/9","v":1}]`, ErrUnsupportedFormat, `label "bv"`},
		{"sum", "/", `[{"n":"/3/0/9","s":1}]`, ErrUnsupportedFormat, `label "s"`},
		{"must understand", "/", `[{"n":"/3/0/9","v":1,"foo_":1}]`, ErrUnsupportedFormat, `must-understand label "foo_"`},
		{"bt not number", "/", `[{"bt":"x","n":"/3/0/9","v":1}]`, ErrMalformed, `label "bt" must be a number`},
		{"invalid utf8", "/", "[{\"n\":\"/3/0/0\",\"vs\":\"a\xffb\"}]", ErrMalformed, "invalid UTF-8 at offset 22"},
		{"time sum overflow", "/", `[{"bt":1.7e308,"n":"/3/0/9","v":1,"t":1.7e308}]`, ErrMalformed, "overflows"},
		{"t overflow", "/", `[{"n":"/3/0/9","v":1,"t":1e999}]`, ErrMalformed, "out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(FormatSenMLJSON, mustPath(t, tc.base), []byte(tc.payload), DefaultModel())
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v (records %v), want %v", err, got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestSenMLJSONEncodeForms(t *testing.T) {
	tests := []struct {
		name string
		base string
		recs []Record
		want string
	}{
		{"record at base", "/3/0/0", []Record{rec("/3/0/0", StringValue("x"))}, `[{"bn":"/3/0/0","vs":"x"}]`},
		{"root", "/", []Record{rec("/3/0/0", Value{}), rec("/1/0", Value{})}, `[{"n":"/3/0/0"},{"n":"/1/0"}]`},
		{"float keeps point", "/9999/0", []Record{rec("/9999/0/4", FloatValue(2)), rec("/9999/0/4", FloatValue(1e300))}, `[{"bn":"/9999/0/","n":"4","v":2.0},{"n":"4","v":1e+300}]`},
		{"escapes", "/9999/0", []Record{rec("/9999/0/1", StringValue("\"\\\n\x01<"))}, `[{"bn":"/9999/0/","n":"1","vs":"\"\\\n\u0001<"}]`},
		{"time", "/9999/0", []Record{timedRec("/9999/0/2", IntegerValue(1), 1700000000), timedRec("/9999/0/2", IntegerValue(1), -2.5)}, `[{"bn":"/9999/0/","n":"2","t":1700000000,"v":1},{"n":"2","t":-2.5,"v":1}]`},
		{"opaque base64url", "/9999/0", []Record{rec("/9999/0/6", OpaqueValue([]byte{0xfb, 0xff}))}, `[{"bn":"/9999/0/","n":"6","vd":"-_8"}]`},
		{"empty", "/", nil, `[]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Encode(FormatSenMLJSON, mustPath(t, tc.base), tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
			if !json.Valid(got) {
				t.Errorf("not valid JSON")
			}
		})
	}
}
