package lwm2m

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"

	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpSocket reads and writes the NoSec socket's datagrams as go-coap's
// UDPConn does, each read with its control message (the interface the
// datagram came in on, which go-coap answers on), but through the net
// package's AddrPort methods, a reused control buffer and the last
// control message kept: go-coap's read made 16 allocations a datagram
// (the sender's address, the control message in three shapes, the
// options, our connection map's string key) and its write 7; here a
// datagram costs one (the control message's parse) and a write none.
//
// The socket's control messages were switched on by go-coap's
// coapNet.NewUDPConn, which made it.
type udpSocket struct {
	conn *net.UDPConn
	ipv6 bool

	// The reader's (only Serve reads): the control buffer, the parsed
	// control messages and the last one handed on, given again while the
	// datagrams come in on the same interface and address. go-coap only
	// reads the control message it keeps with a request.
	oob  []byte
	c4   ipv4.ControlMessage
	c6   ipv6.ControlMessage
	last *coapNet.ControlMessage

	// lastOut is the last control data written without a source,
	// reused while the answers go out on the same interface and IP
	// version (writers are concurrent).
	lastOut atomic.Pointer[outControl]
}

type outControl struct {
	ifIndex int
	ipv6    bool
	oob     []byte
}

func newUDPSocket(l *coapNet.UDPConn) (*udpSocket, error) {
	conn, ok := l.NetConn().(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("coap socket is a %T, not a UDP socket", l.NetConn())
	}
	laddr, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("coap socket's address is a %T", conn.LocalAddr())
	}
	// Decided as go-coap decides which control messages to ask for.
	u := &udpSocket{conn: conn, ipv6: coapNet.IsIPv6(laddr.IP)}
	if u.ipv6 {
		u.oob = ipv6.NewControlMessage(ipv6.FlagTrafficClass | ipv6.FlagHopLimit | ipv6.FlagSrc | ipv6.FlagDst | ipv6.FlagInterface | ipv6.FlagPathMTU)
	} else {
		u.oob = ipv4.NewControlMessage(ipv4.FlagTTL | ipv4.FlagSrc | ipv4.FlagDst | ipv4.FlagInterface)
	}
	return u, nil
}

// read reads one datagram into buf: its length, its sender (an IPv4
// sender unmapped, so that it is one key however it comes) and its
// control message (nil when it has none), which its reader must not
// change.
func (u *udpSocket) read(buf []byte) (int, netip.AddrPort, *coapNet.ControlMessage, error) {
	n, oobn, _, from, err := u.conn.ReadMsgUDPAddrPort(buf, u.oob)
	if err != nil {
		return 0, netip.AddrPort{}, nil, err
	}
	return n, unmapped(from), u.control(u.oob[:oobn]), nil
}

// unmapped is ap with an IPv4-mapped IPv6 address as the IPv4 address:
// a dual-stack socket gives IPv4 peers in the mapped form.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// control is the control message of the datagram just read: its
// interface and destination address, as go-coap's read gives them.
func (u *udpSocket) control(oob []byte) *coapNet.ControlMessage {
	if len(oob) == 0 {
		return nil
	}
	// Parse reuses Dst's bytes, and leaves the fields of a message the
	// datagram does not carry as they were: IfIndex, zeroed first, says
	// whether the packet information (index and address) came.
	var ifIndex int
	var dst net.IP
	if u.ipv6 {
		u.c6.IfIndex = 0
		if u.c6.Parse(oob) != nil {
			return nil
		}
		ifIndex, dst = u.c6.IfIndex, u.c6.Dst
	} else {
		u.c4.IfIndex = 0
		if u.c4.Parse(oob) != nil {
			return nil
		}
		ifIndex, dst = u.c4.IfIndex, u.c4.Dst
	}
	if ifIndex == 0 {
		return nil
	}
	if u.last != nil && u.last.IfIndex == ifIndex && u.last.Dst.Equal(dst) {
		return u.last
	}
	u.last = &coapNet.ControlMessage{Dst: append(net.IP(nil), dst...), IfIndex: ifIndex}
	return u.last
}

// write sends b to to, out of the interface cm names (as go-coap's
// write: it answers a request on the interface it came in on).
func (u *udpSocket) write(ctx context.Context, b []byte, to netip.AddrPort, cm *coapNet.ControlMessage) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var oob []byte
	if cm != nil && (cm.Src != nil || cm.IfIndex > 0) {
		oob = u.outControl(cm, u.ipv6 && !to.Addr().Is4())
	}
	n, _, err := u.conn.WriteMsgUDPAddrPort(b, oob, to)
	if err != nil {
		if errors.Is(err, net.ErrClosed) {
			return coapNet.ErrConnectionIsClosed
		}
		return err
	}
	if n != len(b) {
		return coapNet.ErrWriteInterrupted
	}
	return nil
}

// outControl is the control data naming cm's interface (and source,
// if it has one) for a datagram sent over IPv6, or over IPv4 — also on
// a dual-stack socket (the default ":5683"), where Linux sends to an
// IPv4 peer only with IPv4 packet information: an IPv6 one, whose source
// is not an IPv4-mapped address, fails with EINVAL. (go-coap's write
// sends the IPv6 kind there, so its server never answered an IPv4
// client on a wildcard address.)
func (u *udpSocket) outControl(cm *coapNet.ControlMessage, ipv6Packet bool) []byte {
	if cm.Src != nil {
		return marshalControl(cm, ipv6Packet)
	}
	if out := u.lastOut.Load(); out != nil && out.ifIndex == cm.IfIndex && out.ipv6 == ipv6Packet {
		return out.oob
	}
	out := &outControl{ifIndex: cm.IfIndex, ipv6: ipv6Packet, oob: marshalControl(cm, ipv6Packet)}
	u.lastOut.Store(out)
	return out.oob
}

func marshalControl(cm *coapNet.ControlMessage, ipv6Packet bool) []byte {
	if ipv6Packet {
		return (&ipv6.ControlMessage{Src: cm.Src, IfIndex: cm.IfIndex}).Marshal()
	}
	return (&ipv4.ControlMessage{Src: cm.Src.To4(), IfIndex: cm.IfIndex}).Marshal()
}
