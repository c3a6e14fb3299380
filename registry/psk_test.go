package registry

import (
	"bytes"
	"testing"
)

func TestPSK(t *testing.T) {
	for _, tc := range []struct {
		secret string
		want   []byte
	}{
		{"00ff10", []byte{0, 0xff, 0x10}},
		{"ABCD", []byte{0xab, 0xcd}},
		{"abc", []byte("abc")}, // odd length: text
		{"zz", []byte("zz")},   // not hex: text
		{"iotgate-psk", []byte("iotgate-psk")},
		{"", []byte("")},
	} {
		if got := PSK(tc.secret); !bytes.Equal(got, tc.want) {
			t.Errorf("PSK(%q) = %x, want %x", tc.secret, got, tc.want)
		}
	}
}
