package format

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

// deviceTLV is the Device object instance of OMA-TS-LightweightM2M-V1_0
// §6.4.3.1 (Read /3/0), byte for byte.
const deviceTLV = `
C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65
C8 01 16 4C 69 67 68 74 77 65 69 67 68 74 20 4D 32 4D 20 43 6C 69 65 6E 74
C8 02 09 33 34 35 30 30 30 31 32 33
C3 03 31 2E 30
86 06
   41 00 01
   41 01 05
88 07 08
   42 00 0E D8
   42 01 13 88
87 08
   41 00 7D
   42 01 03 84
C1 09 64
C1 0A 0F
83 0B
   41 00 00
C4 0D 51 82 42 8F
C6 0E 2B 30 32 3A 30 30
C1 10 55`

func deviceRecords() []Record {
	return []Record{
		rec("/3/0/0", StringValue("Open Mobile Alliance")),
		rec("/3/0/1", StringValue("Lightweight M2M Client")),
		rec("/3/0/2", StringValue("345000123")),
		rec("/3/0/3", StringValue("1.0")),
		rec("/3/0/6/0", IntegerValue(1)),
		rec("/3/0/6/1", IntegerValue(5)),
		rec("/3/0/7/0", IntegerValue(3800)),
		rec("/3/0/7/1", IntegerValue(5000)),
		rec("/3/0/8/0", IntegerValue(125)),
		rec("/3/0/8/1", IntegerValue(900)),
		rec("/3/0/9", IntegerValue(100)),
		rec("/3/0/10", IntegerValue(15)),
		rec("/3/0/11/0", IntegerValue(0)),
		rec("/3/0/13", TimeValue(time.Unix(1367491215, 0))),
		rec("/3/0/14", StringValue("+02:00")),
		rec("/3/0/16", StringValue("U")),
	}
}

// TestTLVSpecVectors checks decoding and byte-exact encoding of the spec
// example and of slices of it for narrower request paths.
func TestTLVSpecVectors(t *testing.T) {
	dev := deviceRecords()
	tests := []struct {
		name    string
		base    string
		payload string
		recs    []Record
	}{
		{"device instance /3/0", "/3/0", deviceTLV, dev},
		// Read /3: the same resources wrapped in object instance 0,
		// 0x79 = 121 bytes long.
		{"device object /3", "/3", "08 00 79" + deviceTLV, dev},
		{"single resource /3/0/0", "/3/0/0", "C8 00 14 4F 70 65 6E 20 4D 6F 62 69 6C 65 20 41 6C 6C 69 61 6E 63 65", dev[:1]},
		{"multiple resource /3/0/6", "/3/0/6", "86 06 41 00 01 41 01 05", dev[4:6]},
		{"resource instance /3/0/7/1", "/3/0/7/1", "42 01 13 88", dev[7:8]},
		{"time /3/0/13", "/3/0/13", "C4 0D 51 82 42 8F", dev[13:14]},
		{"empty", "/3/0", "", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := mustPath(t, tc.base)
			payload := unhex(t, tc.payload)
			got, err := Decode(FormatTLV, base, payload, DefaultModel())
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			checkRecords(t, "decode", got, tc.recs)
			enc, err := Encode(FormatTLV, base, tc.recs)
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			if !bytes.Equal(enc, payload) {
				t.Errorf("Encode:\n got % X\nwant % X", enc, payload)
			}
		})
	}
}

func TestTLVEncodingWidths(t *testing.T) {
	tests := []struct {
		name string
		v    Value
		want string
	}{
		{"int8", IntegerValue(-128), "C1 02 80"},
		{"int16", IntegerValue(128), "C2 02 00 80"},
		{"int32", IntegerValue(-40000), "C4 02 FF FF 63 C0"},
		{"int64", IntegerValue(1 << 40), "C8 02 08 00 00 01 00 00 00 00 00"},
		{"uint8", UnsignedValue(255), "C1 03 FF"},
		{"uint16", UnsignedValue(256), "C2 03 01 00"},
		{"uint64", UnsignedValue(1 << 63), "C8 03 08 80 00 00 00 00 00 00 00"},
		{"float32", FloatValue(1.5), "C4 04 3F C0 00 00"},
		{"float64", FloatValue(0.1), "C8 04 08 3F B9 99 99 99 99 99 9A"},
		{"bool", BooleanValue(true), "C1 05 01"},
		{"objlnk", ObjLinkValue(0x42, 0x0102), "C4 08 00 42 01 02"},
		{"time", TimeValue(time.Unix(-1, 0)), "C1 07 FF"},
		{"opaque 8-bit length", OpaqueValue(make([]byte, 8)), "C8 06 08 00 00 00 00 00 00 00 00"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := NewPath(testObject, 0, uint16(tc.v.kind))
			r := []Record{{Path: p, Value: tc.v}}
			got, err := Encode(FormatTLV, NewPath(testObject, 0), r)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.want); !bytes.Equal(got, want) {
				t.Errorf("got % X, want % X", got, want)
			}
			back, err := Decode(FormatTLV, NewPath(testObject, 0), got, testModel())
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, "decode", back, r)
		})
	}
}

func TestTLVLongHeaders(t *testing.T) {
	// 16-bit identifier and 16/24-bit lengths, on a String resource so the
	// value is checked too.
	p := NewPath(testObject, 300, 1)
	for _, n := range []int{255, 256, 65535, 65536} {
		v := StringValue(strings.Repeat("x", n))
		b, err := Encode(FormatTLV, NewPath(testObject), []Record{{Path: p, Value: v}})
		if err != nil {
			t.Fatal(err)
		}
		// Outer type byte: object instance, 16-bit id.
		if b[0]&0xE0 != 0x20 || b[1] != 0x01 || b[2] != 0x2C {
			t.Fatalf("n=%d: header % X", n, b[:6])
		}
		got, err := Decode(FormatTLV, NewPath(testObject), b, testModel())
		if err != nil {
			t.Fatalf("n=%d: %v", n, err)
		}
		checkRecords(t, "long", got, []Record{{Path: p, Value: v}})
	}
}

func TestTLVDecodeLenient(t *testing.T) {
	m := DefaultModel()
	tests := []struct {
		name    string
		base    string
		payload string
		recs    []Record
	}{
		// Non-minimal 8-bit length field for a 1-byte value.
		{"long length field", "/3/0", "C9 09 01 64", []Record{rec("/3/0/9", IntegerValue(100))}},
		// Float resource sent in 8 bytes, integers in 8 bytes.
		{"int64 for small value", "/3/0", "C8 09 08 00 00 00 00 00 00 00 64", []Record{rec("/3/0/9", IntegerValue(100))}},
		// An object instance wrapper around a Read /3/0 answer.
		{"instance wrapper", "/3/0", "03 00 C1 09 64", []Record{rec("/3/0/9", IntegerValue(100))}},
		// Bare resource instances answering Read on a multiple resource.
		{"bare resource instances", "/3/0/6", "41 00 01 41 01 05", []Record{rec("/3/0/6/0", IntegerValue(1)), rec("/3/0/6/1", IntegerValue(5))}},
		// Resource unknown to the model: raw bytes kept as Opaque.
		{"unknown resource", "/3/0", "C2 63 01 02", []Record{rec("/3/0/99", OpaqueValue([]byte{1, 2}))}},
		{"unknown object", "/42/0", "C1 00 07", []Record{rec("/42/0/0", OpaqueValue([]byte{7}))}},
		{"executable resource", "/3/0", "C0 04", []Record{rec("/3/0/4", OpaqueValue([]byte{}))}},
		{"empty instance", "/3", "00 01", []Record{rec("/3/1", Value{})}},
		{"empty multiple resource", "/3/0", "80 06", []Record{rec("/3/0/6", Value{})}},
		{"objlnk", "/1/0", "C4 0A 00 0B 00 01", []Record{rec("/1/0/10", ObjLinkValue(11, 1))}},
		{"unsigned", "/1/0", "C1 0B FF", []Record{rec("/1/0/11", UnsignedValue(255))}},
		{"boolean", "/1/0", "C1 06 01", []Record{rec("/1/0/6", BooleanValue(true))}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(FormatTLV, mustPath(t, tc.base), unhex(t, tc.payload), m)
			if err != nil {
				t.Fatal(err)
			}
			checkRecords(t, "decode", got, tc.recs)
		})
	}
	// Without a model everything is Opaque.
	got, err := Decode(FormatTLV, NewPath(3, 0), unhex(t, "C1 09 64"), nil)
	if err != nil {
		t.Fatal(err)
	}
	checkRecords(t, "nil model", got, []Record{rec("/3/0/9", OpaqueValue([]byte{100}))})
}

func TestTLVDecodeErrors(t *testing.T) {
	tests := []struct {
		name    string
		base    string
		payload string
		want    error
		msg     string
	}{
		{"truncated header", "/3/0", "C8 00", ErrMalformed, "header needs 3 bytes, 2 remain at offset 0"},
		{"truncated 16-bit id", "/3/0", "E1 00", ErrMalformed, "header needs 3 bytes"},
		{"length beyond input", "/3/0", "C8 00 14 4F", ErrMalformed, "length 20 exceeds remaining 1 bytes at offset 0"},
		{"24-bit length beyond input", "/3/0", "D8 00 FF FF FF 00", ErrMalformed, "length 16777215 exceeds remaining 1 bytes"},
		{"nested length beyond parent", "/3", "03 00 C3 00 41", ErrMalformed, "length 3 exceeds remaining 1 bytes at offset 2"},
		{"root base", "/", "C1 09 64", ErrInvalidPath, "no object id"},
		{"bare resource under object", "/3", "C1 09 64", ErrMalformed, "needs object instance TLVs"},
		{"duplicate instance", "/3", "00 00 00 00", ErrMalformed, "duplicate object instance 0"},
		{"wrong instance", "/3/0", "03 01 C1 09 64", ErrMalformed, "does not match base /3/0"},
		{"duplicate resource", "/3/0", "C1 09 64 C1 09 64", ErrMalformed, "duplicate resource 9"},
		{"duplicate resource across wrapper", "/3/0", "C1 09 64 03 00 C1 09 64", ErrMalformed, "duplicate resource 9"},
		{"duplicate resource instance", "/3/0", "86 06 41 00 01 41 00 05", ErrMalformed, "duplicate resource instance 0"},
		{"instance inside instance", "/3", "02 00 00 00", ErrMalformed, "object instance TLV at offset 2 inside object instance"},
		{"resource inside multiple", "/3/0", "83 06 C1 00 01", ErrMalformed, "resource TLV at offset 2 inside multiple resource /3/0/6"},
		{"resource instance at top of instance", "/3/0", "41 00 01", ErrMalformed, "resource instance TLV at offset 0 inside object instance"},
		{"wrong resource", "/3/0/9", "C1 0A 64", ErrMalformed, "resource 10 at offset 0 does not match base /3/0/9"},
		{"resource not alone", "/3/0/6", "C1 06 01 41 00 01", ErrMalformed, "must be alone"},
		{"instance under resource path", "/3/0/6", "00 00", ErrMalformed, "not allowed for resource path"},
		{"wrong resource instance", "/3/0/6/1", "41 00 01", ErrMalformed, "does not match resource instance path"},
		{"two resource instances", "/3/0/6/1", "41 01 01 41 01 01", ErrMalformed, "want 1"},
		{"integer 3 bytes", "/3/0", "C3 09 00 00 01", ErrMalformed, "/3/0/9 Integer value at offset 0 has 3 bytes, want 1, 2, 4 or 8"},
		{"integer empty", "/3/0", "C0 09", ErrMalformed, "has 0 bytes"},
		{"unsigned 3 bytes", "/1/0", "C3 0B 00 00 01", ErrMalformed, "Unsigned value"},
		{"float 2 bytes", "/9999/0", "C2 04 00 00", ErrMalformed, "want 4 or 8"},
		{"boolean 2", "/1/0", "C1 06 02", ErrMalformed, "boolean at offset 0 is 2"},
		{"boolean 2 bytes", "/1/0", "C2 06 00 01", ErrMalformed, "want 1"},
		{"objlnk 3 bytes", "/1/0", "C3 0A 00 01 02", ErrMalformed, "want 4"},
		{"string not utf8", "/3/0", "C2 00 C3 28", ErrMalformed, "not valid UTF-8"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Decode(FormatTLV, mustPath(t, tc.base), unhex(t, tc.payload), testModel())
			if !errors.Is(err, tc.want) {
				t.Fatalf("error = %v (records %v), want %v", err, got, tc.want)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}
