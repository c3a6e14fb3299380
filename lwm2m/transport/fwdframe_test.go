package transport

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

func TestForwardFrameRoundTrip(t *testing.T) {
	for _, tc := range []struct {
		name string
		dev  netip.AddrPort
		want netip.AddrPort
		size int
	}{
		{"ipv4", netip.MustParseAddrPort("10.1.2.3:5684"), netip.MustParseAddrPort("10.1.2.3:5684"), 40},
		{"ipv6", netip.MustParseAddrPort("[2001:db8::7]:61000"), netip.MustParseAddrPort("[2001:db8::7]:61000"), 1},
		{"ipv4-mapped is ipv4", netip.MustParseAddrPort("[::ffff:192.0.2.9]:1"), netip.MustParseAddrPort("192.0.2.9:1"), 100},
		{"largest datagram", netip.MustParseAddrPort("10.0.0.1:9"), netip.MustParseAddrPort("10.0.0.1:9"), maxDatagram},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Repeat([]byte{0x19}, tc.size)
			for _, k := range []fwdKind{fwdFromDevice, fwdToDevice} {
				f := appendFrame(nil, k, tc.dev, b)
				if len(f) > fwdHeaderMax+len(b) {
					t.Fatalf("frame of %d bytes for a %d-byte datagram", len(f), len(b))
				}
				gk, dev, got, err := parseFrame(f)
				if err != nil || gk != k || dev != tc.want || !bytes.Equal(got, b) {
					t.Fatalf("parse: kind %d dev %v %d bytes err %v", gk, dev, len(got), err)
				}
			}
		})
	}
}

func TestForwardFrameRefused(t *testing.T) {
	dev := netip.MustParseAddrPort("10.1.2.3:5684")
	good := appendFrame(nil, fwdFromDevice, dev, []byte{1, 2, 3})
	with := func(i int, v byte) []byte { f := bytes.Clone(good); f[i] = v; return f }
	for _, tc := range []struct {
		name string
		f    []byte
		want error
	}{
		{"empty", nil, errFrameShort},
		{"header cut", good[:5], errFrameShort},
		{"address cut", good[:9], errFrameShort},
		{"bad magic", with(0, 'X'), errFrameMagic},
		{"version 2", with(3, 2), errFrameVersion},
		{"kind 0", with(4, 0), errFrameKind},
		{"kind 3", with(4, 3), errFrameKind},
		{"address length 5", with(5, 5), errFrameAddr},
		{"port 0", appendFrame(nil, fwdToDevice, netip.MustParseAddrPort("10.1.2.3:0"), []byte{1}), errFrameAddr},
		{"unspecified address", appendFrame(nil, fwdToDevice, netip.MustParseAddrPort("0.0.0.0:5684"), []byte{1}), errFrameAddr},
		{"multicast address", appendFrame(nil, fwdToDevice, netip.MustParseAddrPort("[ff02::1]:5684"), []byte{1}), errFrameAddr},
		{"no datagram", good[:len(good)-3], errFrameEmpty},
		{"datagram too large", appendFrame(nil, fwdToDevice, dev, make([]byte, maxDatagram+1)), errFrameLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, _, err := parseFrame(tc.f); !errors.Is(err, tc.want) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
}
