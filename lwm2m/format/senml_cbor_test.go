package format

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

// rfc8428MultiCBOR is RFC 8428 §6's CBOR example: the multiple
// measurements pack of rfc8428MultiJSON, including a half-precision 1.5.
const rfc8428MultiCBOR = `
87 a7 21 78 1b 75 72 6e 3a 64 65 76 3a 6f 77 3a
31 30 65 32 30 37 33 61 30 31 30 38 30 30 36 3a
22 fb 41 d3 03 a1 5b 00 10 62 23 61 41 20 05 00
67 76 6f 6c 74 61 67 65 01 61 56 02 fb 40 5e 06
66 66 66 66 66 a3 00 67 63 75 72 72 65 6e 74 06
24 02 fb 3f f3 33 33 33 33 33 33 a3 00 67 63 75
72 72 65 6e 74 06 23 02 fb 3f f4 cc cc cc cc cc
cd a3 00 67 63 75 72 72 65 6e 74 06 22 02 fb 3f
f6 66 66 66 66 66 66 a3 00 67 63 75 72 72 65 6e
74 06 21 02 f9 3e 00 a3 00 67 63 75 72 72 65 6e
74 06 20 02 fb 3f f9 99 99 99 99 99 9a a3 00 67
63 75 72 72 65 6e 74 06 00 02 fb 3f fb 33 33 33
33 33 33`

func TestSenMLCBORRFC8428(t *testing.T) {
	recs, err := readSenMLCBOR(unhex(t, rfc8428MultiCBOR))
	if err != nil {
		t.Fatal(err)
	}
	checkRFC8428Multi(t, recs)
	// And the JSON form reads the same.
	jrecs, err := readSenMLJSON([]byte(rfc8428MultiJSON))
	if err != nil {
		t.Fatal(err)
	}
	for i := range recs {
		if recs[i] != jrecs[i] {
			t.Errorf("record %d: cbor %+v json %+v", i, recs[i], jrecs[i])
		}
	}
}

func TestSenMLCBORVectors(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		payload string
		recs    []Record
		exact   bool // our encoder produces exactly payload
	}{
		{
			// [{-2:"/3/0/", 0:"0", 3:"Open Mobile Alliance"}, {0:"9", 2:100}]
			"device subset", "/3/0", `82
			a3 21 65 2f 33 2f 30 2f 00 61 30 03 74 4f 70 65 6e 20 4d 6f 62 69 6c 65 20 41 6c 6c 69 61 6e 63 65
			a2 00 61 39 02 18 64`,
			[]Record{rec("/3/0/0", StringValue("Open Mobile Alliance")), rec("/3/0/9", IntegerValue(100))}, true,
		},
		{
			// [{0:"/9999/0/8", "vlo":"3:0"}, {0:"/9999/0/6", 8:h'000102ff'}, {0:"/9999/0/5", 4:true}]
			"typed values", "/", `83
			a2 00 69 2f 39 39 39 39 2f 30 2f 38 63 76 6c 6f 63 33 3a 30
			a2 00 69 2f 39 39 39 39 2f 30 2f 36 08 44 00 01 02 ff
			a2 00 69 2f 39 39 39 39 2f 30 2f 35 04 f5`,
			[]Record{rec("/9999/0/8", ObjLinkValue(3, 0)), rec("/9999/0/6", OpaqueValue([]byte{0, 1, 2, 0xff})), rec("/9999/0/5", BooleanValue(true))}, true,
		},
		{
			// [{0:"/9999/0/4", 6:1700000000, 2:1.5f32}, {0:"/9999/0/4", 6:-2.5, 2:0.1}]
			"floats and times", "/", `82
			a3 00 69 2f 39 39 39 39 2f 30 2f 34 06 1a 65 53 f1 00 02 fa 3f c0 00 00
			a3 00 69 2f 39 39 39 39 2f 30 2f 34 06 fa c0 20 00 00 02 fb 3f b9 99 99 99 99 99 9a`,
			[]Record{timedRec("/9999/0/4", FloatValue(1.5), 1700000000), timedRec("/9999/0/4", FloatValue(0.1), -2.5)}, true,
		},
		{
			// [{0:"/9999/0/3", 2:18446744073709551615}, {0:"/9999/0/2", 2:-9223372036854775808}]
			"64-bit integers", "/", `82
			a2 00 69 2f 39 39 39 39 2f 30 2f 33 02 1b ff ff ff ff ff ff ff ff
			a2 00 69 2f 39 39 39 39 2f 30 2f 32 02 3b 7f ff ff ff ff ff ff ff`,
			[]Record{rec("/9999/0/3", UnsignedValue(math.MaxUint64)), rec("/9999/0/2", IntegerValue(math.MinInt64))}, true,
		},
		{
			// Indefinite array and map, chunked name "/3"+"/0"+"/9",
			// half-float 1.0 for an Integer resource, unknown labels
			// (integer 99 with a nested value, text "x") skipped.
			"indefinite lengths", "/", `9f bf
			00 7f 62 2f 33 62 2f 30 62 2f 39 ff
			02 f9 3c 00
			18 63 82 01 a1 01 02
			61 78 f6
			ff ff`,
			[]Record{rec("/3/0/9", IntegerValue(1))}, false,
		},
		{
			// Names only: a Read-Composite request. [{0:"/3/0/0"},{0:"/1/0"}]
			"read composite", "/", `82 a1 00 66 2f 33 2f 30 2f 30 a1 00 64 2f 31 2f 30`,
			[]Record{rec("/3/0/0", Value{}), rec("/1/0", Value{})}, true,
		},
		{"empty pack", "/", `80`, nil, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := mustPath(t, tc.base)
			payload := unhex(t, tc.payload)
			got, err := Decode(FormatSenMLCBOR, base, payload, testModel())
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, "decode", got, tc.recs)
			if !tc.exact {
				return
			}
			enc, err := Encode(FormatSenMLCBOR, base, tc.recs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, payload) {
				t.Errorf("encode:\n got % x\nwant % x", enc, payload)
			}
		})
	}
}

func TestSenMLCBORDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		want    error
		msg     string
	}{
		{"empty", ``, ErrMalformed, "unexpected end of input at offset 0"},
		{"map not array", `a0`, ErrMalformed, "pack must be an array, got a map"},
		{"element not map", `81 01`, ErrMalformed, "record 0 must be a map"},
		{"truncated array", `82 a0`, ErrMalformed, "unexpected end of input at offset 2"},
		{"huge array count", `9b ff ff ff ff ff ff ff ff a0`, ErrMalformed, "unexpected end of input"},
		{"truncated argument", `9a 00 00`, ErrMalformed, "argument needs 4 bytes, 2 remain"},
		{"reserved info", `81 bc`, ErrMalformed, "reserved additional information 28"},
		{"indefinite integer", `81 a1 00 1f`, ErrMalformed, "indefinite length not allowed for unsigned integer"},
		{"stray break", `81 a1 00 ff`, ErrMalformed, "unexpected break"},
		{"tag", `81 a1 00 c1 00`, ErrUnsupportedFormat, "tag 1 at offset 3"},
		{"tagged pack", `d9 d9 f7 80`, ErrUnsupportedFormat, "tag 55799"},
		{"string beyond input", `81 a1 00 7a ff ff ff ff 41`, ErrMalformed, "text string length 4294967295 exceeds remaining 1 bytes"},
		{"bytes key", `81 a1 41 00 00`, ErrMalformed, "map key must be an integer or text, got a byte string"},
		{"invalid utf8 name", `81 a1 00 62 c3 28`, ErrMalformed, "not valid UTF-8"},
		{"chunk type mismatch", `81 a1 00 7f 41 00 ff`, ErrMalformed, "chunk of indefinite text string is a byte string"},
		{"nested chunk", `81 a1 00 7f 7f ff ff`, ErrMalformed, "chunk of indefinite text string"},
		{"nested known label", `81 a1 00 81 00`, ErrMalformed, "nested array not supported"},
		{"null value", `81 a2 00 66 2f 33 2f 30 2f 30 03 f6`, ErrMalformed, `label "vs": simple value 22 not allowed`},
		{"two-byte simple", `81 a2 00 66 2f 33 2f 30 2f 30 03 f8 20`, ErrMalformed, "simple value 32"},
		{"negint out of range", `81 a2 00 66 2f 33 2f 30 2f 39 02 3b ff ff ff ff ff ff ff ff`, ErrMalformed, "below the int64 range"},
		{"duplicate label int and text", `81 a2 00 66 2f 33 2f 30 2f 39 61 6e 66 2f 33 2f 30 2f 39`, ErrMalformed, `duplicate label "n"`},
		{"trailing bytes", `80 00`, ErrMalformed, "1 bytes after the pack"},
		{"deep unknown value", `81 a1 18 63` + strings.Repeat(" 81", 40) + ` 00`, ErrMalformed, "nesting deeper than 16"},
		{"name wrong type", `81 a1 00 01`, ErrMalformed, `label "n" must be a string, got a number`},
		{"vd as text", `81 a2 00 66 2f 33 2f 30 2f 39 08 62 21 21`, ErrMalformed, "vd: base64"},
		{"vb not bool", `81 a2 00 66 2f 33 2f 30 2f 39 04 01`, ErrMalformed, `label "vb" must be a boolean`},
		{"NaN time", `81 a3 00 66 2f 33 2f 30 2f 39 02 01 06 f9 7e 00`, ErrMalformed, "time NaN is not finite"},
		{"infinite base time", `81 a3 22 f9 7c 00 00 66 2f 33 2f 30 2f 39 02 01`, ErrMalformed, "base time +Inf is not finite"},
		{"kind mismatch", `81 a2 00 66 2f 33 2f 30 2f 39 02 f9 3e 00`, ErrKindMismatch, "Float 1.5 does not fit Integer"},
		{"bad path", `81 a2 00 62 2f 78 02 01`, ErrMalformed, `name "/x"`},
		{"base value", `81 a3 24 01 00 66 2f 33 2f 30 2f 39 02 01`, ErrUnsupportedFormat, `label "bv"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(FormatSenMLCBOR, NewPath(), unhex(t, tc.payload), DefaultModel())
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v (records %v), want %v", err, got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}
