package transport

import (
	"errors"
	"fmt"
	"net/netip"
)

// A forward frame carries one DTLS datagram between two nodes of a
// cluster, with the address of the device it came from or goes to:
//
//	0   "IGF"   magic
//	3   1       version
//	4   kind    1: from a device, for the node that issued its CID;
//	            2: an answer of that node, to send to the device
//	5   n       4 or 16: the length of the device's IP address
//	6   IP      n bytes
//	6+n port    2 bytes, big-endian
//	8+n         the datagram, as the device sent it or is to receive it
//
// The frame adds at most fwdHeaderMax bytes; what a node sends a device
// is exactly the datagram of the frame, never more.

const (
	fwdVersion = 1
	// fwdHeaderMax is the largest header: an IPv6 address.
	fwdHeaderMax = 8 + 16
	// maxDatagram is the largest DTLS datagram read or forwarded (the
	// mux's read buffer).
	maxDatagram = 8192
)

var fwdMagic = [3]byte{'I', 'G', 'F'}

// fwdKind says which way a frame goes.
type fwdKind byte

const (
	// fwdFromDevice: a datagram a node received from a device, for the
	// node that issued the CID in it.
	fwdFromDevice fwdKind = 1
	// fwdToDevice: a datagram the owning node sends the device through
	// the node its datagram came in at.
	fwdToDevice fwdKind = 2
)

// Errors of parseFrame: a frame refused.
var (
	errFrameShort   = errors.New("forward frame: shorter than its header")
	errFrameMagic   = errors.New("forward frame: bad magic")
	errFrameVersion = errors.New("forward frame: unknown version")
	errFrameKind    = errors.New("forward frame: unknown kind")
	errFrameAddr    = errors.New("forward frame: bad device address")
	errFrameEmpty   = errors.New("forward frame: no datagram")
	errFrameLarge   = errors.New("forward frame: datagram too large")
)

// appendFrame appends the frame of datagram b of kind k for the device
// at dev to dst.
func appendFrame(dst []byte, k fwdKind, dev netip.AddrPort, b []byte) []byte {
	a := dev.Addr().Unmap()
	dst = append(dst, fwdMagic[:]...)
	dst = append(dst, fwdVersion, byte(k))
	if a.Is4() {
		ip := a.As4()
		dst = append(dst, 4)
		dst = append(dst, ip[:]...)
	} else {
		ip := a.As16()
		dst = append(dst, 16)
		dst = append(dst, ip[:]...)
	}
	dst = append(dst, byte(dev.Port()>>8), byte(dev.Port()))
	return append(dst, b...)
}

// parseFrame reads a frame: its kind, the device's address and the
// datagram (a slice of f).
func parseFrame(f []byte) (fwdKind, netip.AddrPort, []byte, error) {
	if len(f) < 6 {
		return 0, netip.AddrPort{}, nil, errFrameShort
	}
	if [3]byte(f[:3]) != fwdMagic {
		return 0, netip.AddrPort{}, nil, errFrameMagic
	}
	if f[3] != fwdVersion {
		return 0, netip.AddrPort{}, nil, fmt.Errorf("%w %d", errFrameVersion, f[3])
	}
	k := fwdKind(f[4])
	if k != fwdFromDevice && k != fwdToDevice {
		return 0, netip.AddrPort{}, nil, fmt.Errorf("%w %d", errFrameKind, f[4])
	}
	n := int(f[5])
	if n != 4 && n != 16 {
		return 0, netip.AddrPort{}, nil, fmt.Errorf("%w: address length %d", errFrameAddr, n)
	}
	if len(f) < 8+n {
		return 0, netip.AddrPort{}, nil, errFrameShort
	}
	a, _ := netip.AddrFromSlice(f[6 : 6+n])
	a = a.Unmap()
	port := uint16(f[6+n])<<8 | uint16(f[7+n])
	if port == 0 || !a.IsValid() || a.IsUnspecified() || a.IsMulticast() {
		return 0, netip.AddrPort{}, nil, fmt.Errorf("%w %v:%d", errFrameAddr, a, port)
	}
	b := f[8+n:]
	switch {
	case len(b) == 0:
		return 0, netip.AddrPort{}, nil, errFrameEmpty
	case len(b) > maxDatagram:
		return 0, netip.AddrPort{}, nil, errFrameLarge
	}
	return k, netip.AddrPortFrom(a, port), b, nil
}
