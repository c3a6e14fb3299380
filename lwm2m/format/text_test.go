package format

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestTextDecode(t *testing.T) {
	tests := []struct {
		base    string
		payload string
		want    Value
	}{
		{"/3/0/0", "Open Mobile Alliance", StringValue("Open Mobile Alliance")},
		{"/3/0/9", "100", IntegerValue(100)},
		{"/3/0/9", "-100", IntegerValue(-100)},
		{"/3/0/6/1", "5", IntegerValue(5)},
		{"/3/0/13", "1367491215", TimeValue(time.Unix(1367491215, 0))},
		{"/1/0/6", "1", BooleanValue(true)},
		{"/1/0/6", "0", BooleanValue(false)},
		{"/1/0/11", "18446744073709551615", UnsignedValue(math.MaxUint64)},
		{"/1/0/10", "11:0", ObjLinkValue(11, 0)},
		{"/0/0/3", "AQID", OpaqueValue([]byte{1, 2, 3})},
		{"/9999/0/4", "-12.5e-3", FloatValue(-12.5e-3)},
		{"/9999/0/4", "7", FloatValue(7)},
		{"/9999/0/4", ".5", FloatValue(0.5)},
		{"/42/0/0", "anything", StringValue("anything")}, // unknown: String
		{"/3/0/4", "", StringValue("")},                  // executable: no kind
	}
	for _, tc := range tests {
		got, err := Decode(FormatText, mustPath(t, tc.base), []byte(tc.payload), testModel())
		if err != nil {
			t.Errorf("%s %q: %v", tc.base, tc.payload, err)
			continue
		}
		checkRecords(t, tc.base+" "+tc.payload, got, []Record{rec(tc.base, tc.want)})
	}
}

func TestTextEncode(t *testing.T) {
	tests := []struct {
		v    Value
		want string
	}{
		{StringValue("héllo"), "héllo"},
		{IntegerValue(-7), "-7"},
		{UnsignedValue(7), "7"},
		{FloatValue(2), "2.0"},
		{FloatValue(-0.125), "-0.125"},
		{FloatValue(1e21), "1e+21"},
		{FloatValue(1e-7), "1e-07"},
		{BooleanValue(true), "1"},
		{OpaqueValue([]byte{0xff, 0xfe}), "//4="},
		{TimeValue(time.Unix(1367491215, 0)), "1367491215"},
		{ObjLinkValue(3, 65535), "3:65535"},
	}
	for _, tc := range tests {
		p := NewPath(testObject, 0, uint16(tc.v.kind))
		got, err := Encode(FormatText, p, []Record{{Path: p, Value: tc.v}})
		if err != nil {
			t.Errorf("%s: %v", tc.v.kind, err)
			continue
		}
		if string(got) != tc.want {
			t.Errorf("%s: got %q, want %q", tc.v.kind, got, tc.want)
		}
	}
}

func TestTextDecodeErrors(t *testing.T) {
	tests := []struct {
		base    string
		payload string
		want    error
		msg     string
	}{
		{"/3/0", "x", ErrInvalidPath, "not a resource"},
		{"/", "x", ErrInvalidPath, "not a resource"},
		{"/3/0/9", "", ErrMalformed, `text: /3/0/9 as Integer: "" is not a 64-bit decimal integer`},
		{"/3/0/9", " 1", ErrMalformed, "not a 64-bit decimal integer"},
		{"/3/0/9", "99999999999999999999", ErrMalformed, "not a 64-bit"},
		{"/1/0/11", "-1", ErrMalformed, "unsigned"},
		{"/1/0/6", "true", ErrMalformed, `boolean "true" is neither`},
		{"/1/0/10", "11", ErrMalformed, "not \"object:instance\""},
		{"/1/0/10", "11:-1", ErrMalformed, "0..65535"},
		{"/0/0/3", "@@@", ErrMalformed, "base64"},
		{"/9999/0/4", "NaN", ErrMalformed, "not a decimal number"},
		{"/9999/0/4", "Inf", ErrMalformed, "not a decimal number"},
		{"/9999/0/4", "0x1p3", ErrMalformed, "not a decimal number"},
		{"/9999/0/4", "1_000", ErrMalformed, "not a decimal number"},
		{"/9999/0/4", "1e", ErrMalformed, "not a decimal number"},
		{"/9999/0/4", "1e999", ErrMalformed, "out of float64 range"},
		{"/3/0/0", "\xff", ErrMalformed, "not valid UTF-8"},
		{"/3/0/0", strings.Repeat("\xff", 100), ErrMalformed, "not valid UTF-8"},
	}
	for _, tc := range tests {
		_, err := Decode(FormatText, mustPath(t, tc.base), []byte(tc.payload), testModel())
		if !errors.Is(err, tc.want) {
			t.Errorf("%s %q: error = %v, want %v", tc.base, tc.payload, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%s %q: error %q does not mention %q", tc.base, tc.payload, err, tc.msg)
		}
	}
}

func TestOpaque(t *testing.T) {
	p := NewPath(5, 0, 0)
	payload := []byte{0, 1, 2, 3}
	got, err := Decode(FormatOpaque, p, payload, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, "decode", got, []Record{{Path: p, Value: OpaqueValue(payload)}})
	payload[0] = 9 // the record must not alias the payload
	if got[0].Value.Bytes()[0] != 0 {
		t.Error("decoded value aliases the payload")
	}
	if _, err := Decode(FormatOpaque, NewPath(5, 0), payload, nil); !errors.Is(err, ErrInvalidPath) {
		t.Errorf("opaque on instance path: %v", err)
	}
	got2, err := Decode(FormatOpaque, NewPath(19, 0, 0, 3), nil, nil)
	if err != nil || len(got2) != 1 || got2[0].Value.Kind() != KindOpaque || len(got2[0].Value.Bytes()) != 0 {
		t.Errorf("empty opaque on resource instance: %v %v", got2, err)
	}
}
