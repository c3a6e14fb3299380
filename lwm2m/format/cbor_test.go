package format

import (
	"bytes"
	"math"
	"testing"
)

func TestHalfFloat(t *testing.T) {
	// RFC 8949 Appendix A.
	tests := []struct {
		bits uint16
		want float64
	}{
		{0x0000, 0},
		{0x3c00, 1},
		{0x3e00, 1.5},
		{0x7bff, 65504},
		{0x0001, 5.960464477539063e-8},
		{0x0400, 0.00006103515625},
		{0xc400, -4},
		{0x7c00, math.Inf(1)},
		{0xfc00, math.Inf(-1)},
	}
	for _, tc := range tests {
		if got := halfToFloat64(tc.bits); got != tc.want {
			t.Errorf("half %#04x = %v, want %v", tc.bits, got, tc.want)
		}
	}
	if got := halfToFloat64(0x7e00); !math.IsNaN(got) {
		t.Errorf("half 0x7e00 = %v, want NaN", got)
	}
	if got := halfToFloat64(0x8000); got != 0 || !math.Signbit(got) {
		t.Errorf("half 0x8000 = %v, want -0", got)
	}
}

func TestCBORAppend(t *testing.T) {
	// RFC 8949 Appendix A encodings.
	tests := []struct {
		name string
		got  []byte
		want string
	}{
		{"0", cborAppendInt(nil, 0), "00"},
		{"23", cborAppendInt(nil, 23), "17"},
		{"24", cborAppendInt(nil, 24), "18 18"},
		{"1000", cborAppendInt(nil, 1000), "19 03 e8"},
		{"1000000", cborAppendInt(nil, 1000000), "1a 00 0f 42 40"},
		{"1000000000000", cborAppendInt(nil, 1000000000000), "1b 00 00 00 e8 d4 a5 10 00"},
		{"-1", cborAppendInt(nil, -1), "20"},
		{"-1000", cborAppendInt(nil, -1000), "39 03 e7"},
		{"minint64", cborAppendInt(nil, math.MinInt64), "3b 7f ff ff ff ff ff ff ff"},
		{"1.1", cborAppendFloat(nil, 1.1), "fb 3f f1 99 99 99 99 99 9a"},
		{"100000.0", cborAppendFloat(nil, 100000), "fa 47 c3 50 00"},
		{"-4.1", cborAppendFloat(nil, -4.1), "fb c0 10 66 66 66 66 66 66"},
		{"true", cborAppendBool(nil, true), "f5"},
		{"false", cborAppendBool(nil, false), "f4"},
		{`"IETF"`, cborAppendText(nil, "IETF"), "64 49 45 54 46"},
		{`h'01020304'`, cborAppendBytes(nil, "\x01\x02\x03\x04"), "44 01 02 03 04"},
	}
	for _, tc := range tests {
		if want := unhex(t, tc.want); !bytes.Equal(tc.got, want) {
			t.Errorf("%s: got % x, want % x", tc.name, tc.got, want)
		}
	}
}

func TestCBORSkip(t *testing.T) {
	// Every RFC 8949 item type we accept is skipped whole.
	items := []string{
		"00", "3b 7f ff ff ff ff ff ff ff", "f9 3c 00", "fa 47 c3 50 00", "f6", "f7", "f8 ff",
		"5f 42 01 02 43 03 04 05 ff", "7f 65 73 74 72 65 61 64 6d 69 6e 67 ff",
		"83 01 82 02 03 82 04 05", "9f 01 82 02 03 9f 04 05 ff ff",
		"a2 61 61 01 61 62 82 02 03", "bf 61 61 01 61 62 9f 02 03 ff ff",
	}
	for _, s := range items {
		b := unhex(t, s)
		r := &cborReader{format: "test", b: b}
		if err := r.skip(0); err != nil {
			t.Errorf("skip %s: %v", s, err)
			continue
		}
		if r.off != len(b) {
			t.Errorf("skip %s stopped at %d of %d", s, r.off, len(b))
		}
	}
}
