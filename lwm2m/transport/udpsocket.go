package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"

	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpSocket reads and writes a CoAP socket's datagrams. Each read
// comes with its control message: the interface the datagram came in on
// and the address it was sent to. Everything sent to that peer afterwards
// (answers, and requests of ours such as the Observe) goes out from that
// address and interface. On a host with several addresses, a client
// on a connected socket (lwIP, libcoap, this package's client) or behind
// a NAT only takes datagrams from the address it sent to; go-coap's
// UDPConn kept only the interface, and the kernel chose the source.
//
// It reads with the net package's AddrPort methods, a reused control
// buffer and the control data of the last datagram kept while datagrams
// keep arriving alike: a datagram costs one allocation (the control
// message's parse), a write none. go-coap's read made about 16 (the
// sender's address, the control message in three shapes, the options, our
// connection map's string key) and its write about 7 (allocation profile
// of BenchmarkRegister).
//
// The DTLS socket layer (udpMux) uses it too, for the same reasons.
type udpSocket struct {
	conn *net.UDPConn
	ipv6 bool

	// The reader's (one goroutine reads): the control buffer, the parsed
	// control messages and the last answer path handed on.
	oob  []byte
	c4   ipv4.ControlMessage
	c6   ipv6.ControlMessage
	last *answerPath
}

// answerPath is how datagrams from one peer arrived, and so how to send
// to it. It is shared by every peer whose datagrams arrive alike, and
// never changed.
type answerPath struct {
	// cm is the control message go-coap keeps with a request (it reads
	// only the interface).
	cm *coapNet.ControlMessage
	// peer4: the peer is IPv4 (on a dual-stack socket too).
	peer4 bool
	// oob is the control data of a datagram to the peer: from the address
	// it sent to, out of the interface it came in on.
	oob []byte
	// refused: the kernel would not send from that address (it was a
	// subnet's broadcast address, or it has gone); datagrams along this
	// path go by the kernel's route, without a failed send first.
	refused atomic.Bool
	// via, when valid, is the forward address of the cluster node the
	// peer's datagram came in at: datagrams to the peer go through it
	// (see Forwarder), and cm and oob are unset.
	via netip.AddrPort
}

// lastPath is a peer's answer path, set by the reader from each datagram
// and read by the writers.
type lastPath struct{ p atomic.Pointer[answerPath] }

// note records the path of the peer's latest datagram (nil: it had no
// control message, and the last known path stays).
func (l *lastPath) note(p *answerPath) {
	if p != nil && l.p.Load() != p {
		l.p.Store(p)
	}
}

func (l *lastPath) get() *answerPath { return l.p.Load() }

// newUDPSocket reads and writes conn, whose control messages (the
// destination address and interface of each datagram) it switches on.
// Where the system cannot give them, datagrams go out by the kernel's
// route, as go-coap's did.
func newUDPSocket(conn *net.UDPConn) (*udpSocket, error) {
	laddr, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("socket address is a %T, not a UDP address", conn.LocalAddr())
	}
	// IPv6 or IPv4 control messages as the socket's family, decided as
	// go-coap decides: a wildcard socket is dual-stack, and then its IPv4
	// datagrams come with IPv6 packet information.
	u := &udpSocket{conn: conn, ipv6: coapNet.IsIPv6(laddr.IP)}
	if u.ipv6 {
		_ = ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		u.oob = ipv6.NewControlMessage(ipv6.FlagTrafficClass | ipv6.FlagHopLimit | ipv6.FlagSrc | ipv6.FlagDst | ipv6.FlagInterface | ipv6.FlagPathMTU)
	} else {
		_ = ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		u.oob = ipv4.NewControlMessage(ipv4.FlagTTL | ipv4.FlagSrc | ipv4.FlagDst | ipv4.FlagInterface)
	}
	return u, nil
}

// read reads one datagram into buf: its length, its sender (an IPv4
// sender unmapped, so that it is one key however it comes) and how to
// answer it (nil when the datagram had no control message).
func (u *udpSocket) read(buf []byte) (int, netip.AddrPort, *answerPath, error) {
	n, oobn, _, from, err := u.conn.ReadMsgUDPAddrPort(buf, u.oob)
	if err != nil {
		return 0, netip.AddrPort{}, nil, err
	}
	from = unmapped(from)
	return n, from, u.answerPath(u.oob[:oobn], from.Addr().Is4()), nil
}

// unmapped is ap with an IPv4-mapped IPv6 address as the IPv4 address:
// a dual-stack socket gives IPv4 peers in the mapped form.
func unmapped(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// answerPath is the answer path of the datagram just read, from its
// control data.
func (u *udpSocket) answerPath(oob []byte, peer4 bool) *answerPath {
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
	if p := u.last; p != nil && p.cm.IfIndex == ifIndex && p.cm.Dst.Equal(dst) && p.peer4 == peer4 {
		return p
	}
	dst = append(net.IP(nil), dst...)
	u.last = &answerPath{
		cm:    &coapNet.ControlMessage{Dst: dst, IfIndex: ifIndex},
		peer4: peer4,
		oob:   u.marshal(replySource(dst), ifIndex, peer4),
	}
	return u.last
}

// replySource is the address to answer a datagram sent to dst from: dst
// itself, unless it is a group address (multicast, or IPv4's limited
// broadcast; a subnet's broadcast address is caught by write).
func replySource(dst net.IP) net.IP {
	a, ok := netip.AddrFromSlice(dst)
	if !ok {
		return nil
	}
	a = a.Unmap()
	if a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) || a.IsUnspecified() {
		return nil
	}
	return net.IP(a.AsSlice())
}

// marshal is control data naming a source address (nil: the kernel's
// choice) and an interface, of the IP version of the peer's datagrams.
// On a dual-stack socket an IPv4 peer needs IPv4 packet information:
// Linux refuses IPv6 packet information whose source is not an
// IPv4-mapped address (EINVAL), which is what go-coap's write sent, so
// its server never answered an IPv4 client on the default ":5683".
func (u *udpSocket) marshal(src net.IP, ifIndex int, peer4 bool) []byte {
	if u.ipv6 && !peer4 {
		return (&ipv6.ControlMessage{Src: src, IfIndex: ifIndex}).Marshal()
	}
	return (&ipv4.ControlMessage{Src: src.To4(), IfIndex: ifIndex}).Marshal()
}

// write sends b to the peer at to: along path, the way the peer's last
// datagram came (nil: by the kernel's route, as for a peer that has sent
// nothing since the server started).
func (u *udpSocket) write(ctx context.Context, b []byte, to netip.AddrPort, path *answerPath) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var oob []byte
	if path != nil && !path.refused.Load() {
		oob = path.oob
	}
	n, _, err := u.conn.WriteMsgUDPAddrPort(b, oob, to)
	if oob != nil && refusedSource(err) {
		// A source the kernel will not send from: as go-coap sent, by the
		// kernel's route, from now on.
		path.refused.Store(true)
		n, _, err = u.conn.WriteMsgUDPAddrPort(b, nil, to)
	}
	if err != nil {
		return err
	}
	if n != len(b) {
		return coapNet.ErrWriteInterrupted
	}
	return nil
}

// refusedSource: a send's source address was refused (Linux: ENETUNREACH
// for an IPv4 address not the host's, a broadcast address included;
// EINVAL for an IPv6 one, and for a group or unspecified address).
func refusedSource(err error) bool {
	return errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENETUNREACH)
}
