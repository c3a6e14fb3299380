package lwm2m

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	coapNet "github.com/plgd-dev/go-coap/v3/net"
)

// listenSocket is a NoSec socket as the server makes it (go-coap's
// UDPConn switches its control messages on), and our reader of it.
func listenSocket(t *testing.T, addr string) (*udpSocket, netip.AddrPort) {
	t.Helper()
	l, err := listenUDP(addr)
	if err != nil {
		t.Skipf("cannot listen on %s here: %v", addr, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	u, err := newUDPSocket(l)
	if err != nil {
		t.Fatal(err)
	}
	return u, l.LocalAddr().(*net.UDPAddr).AddrPort()
}

// peer is a client socket sending to one address. It is not connected:
// the server answers from the address its kernel picks, which on a
// wildcard socket need not be the one the datagram went to (as with
// go-coap, only the interface is kept).
type peer struct {
	*net.UDPConn
	to netip.AddrPort
}

func dialPeer(t *testing.T, from string, to netip.AddrPort) peer {
	t.Helper()
	c, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(from)))
	if err != nil {
		t.Skipf("cannot send from %s here: %v", from, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return peer{c, to}
}

func (p peer) Write(b []byte) (int, error) { return p.WriteToUDPAddrPort(b, p.to) }

func (p peer) Read(b []byte) (int, error) {
	n, _, err := p.ReadFromUDPAddrPort(b)
	return n, err
}

func loopbackIndex(t *testing.T) int {
	t.Helper()
	ifaces, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, ifi := range ifaces {
		if ifi.Flags&net.FlagLoopback != 0 {
			return ifi.Index
		}
	}
	t.Skip("no loopback interface")
	return 0
}

// A datagram comes with its sender (unmapped on a dual-stack socket, so
// the connection map has one key per peer), the interface it came in on
// and the address it was sent to, as go-coap's read gives them; and the
// answer written with that control message reaches the sender.
func TestUDPSocketReadsSenderAndControl(t *testing.T) {
	lo := loopbackIndex(t)
	for _, tc := range []struct {
		name, listen, peer, to string
		wantDst                netip.Addr
	}{
		{name: "wildcard 0.0.0.0 (Go makes it dual-stack)", listen: "0.0.0.0:0", peer: "127.0.0.1:0", to: "127.0.0.1", wantDst: netip.MustParseAddr("127.0.0.1")},
		{name: "wildcard, another loopback address", listen: "0.0.0.0:0", peer: "127.0.0.1:0", to: "127.0.0.3", wantDst: netip.MustParseAddr("127.0.0.3")},
		{name: "bound to an ipv4 address", listen: "127.0.0.1:0", peer: "127.0.0.1:0", to: "127.0.0.1", wantDst: netip.MustParseAddr("127.0.0.1")},
		{name: "wildcard [::], ipv6 peer", listen: "[::]:0", peer: "[::1]:0", to: "::1", wantDst: netip.MustParseAddr("::1")},
		{name: "bound to an ipv6 address", listen: "[::1]:0", peer: "[::1]:0", to: "::1", wantDst: netip.MustParseAddr("::1")},
		{name: "wildcard [::], ipv4 peer", listen: "[::]:0", peer: "127.0.0.1:0", to: "127.0.0.1", wantDst: netip.MustParseAddr("127.0.0.1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, at := listenSocket(t, tc.listen)
			peer := dialPeer(t, tc.peer, netip.AddrPortFrom(netip.MustParseAddr(tc.to), at.Port()))
			if _, err := peer.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			_ = u.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			n, from, cm, err := u.read(buf)
			if err != nil {
				t.Fatal(err)
			}
			want := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			want = netip.AddrPortFrom(want.Addr().Unmap(), want.Port())
			if string(buf[:n]) != "ping" || from != want {
				t.Fatalf("read %q from %v, want \"ping\" from %v", buf[:n], from, want)
			}
			if tc.wantDst.IsValid() {
				if cm == nil {
					t.Fatal("no control message")
				}
				dst, _ := netip.AddrFromSlice(cm.Dst)
				if cm.IfIndex != lo || dst.Unmap() != tc.wantDst {
					t.Fatalf("control message %+v, want interface %d and destination %v", cm, lo, tc.wantDst)
				}
			}
			if err := u.write(context.Background(), []byte("pong"), from, cm); err != nil {
				t.Fatal(err)
			}
			n, err = peer.Read(buf)
			if err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("peer read %q, %v; want \"pong\"", buf[:n], err)
			}
		})
	}
}

// The control message handed on is the last one while datagrams come in
// on the same interface and address (go-coap only reads it), and a new
// one when the address changes; and reading a datagram costs at most
// one allocation, writing the answer none.
func TestUDPSocketReusesControlMessages(t *testing.T) {
	u, at := listenSocket(t, "0.0.0.0:0")
	_ = u.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	one := dialPeer(t, "127.0.0.1:0", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), at.Port()))
	other := dialPeer(t, "127.0.0.1:0", netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), at.Port()))
	buf := make([]byte, 64)
	roundTrip := func(peer peer) *coapNet.ControlMessage {
		if _, err := peer.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		_, from, cm, err := u.read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.write(context.Background(), []byte("pong"), from, cm); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Read(buf); err != nil {
			t.Fatal(err)
		}
		return cm
	}
	first := roundTrip(one)
	if again := roundTrip(one); again != first {
		t.Fatalf("second datagram to the same address got a new control message %+v", again)
	}
	moved := roundTrip(other)
	if moved == first || moved.Dst.Equal(first.Dst) {
		t.Fatalf("datagram to another address got %+v, the first got %+v", moved, first)
	}
	if first.Dst.String() != "127.0.0.1" {
		t.Fatalf("the first control message changed: %+v", first)
	}

	if _, err := one.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var from netip.AddrPort
	var cm *coapNet.ControlMessage
	if allocs := testing.AllocsPerRun(50, func() {
		var err error
		if _, from, cm, err = u.read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := one.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
	}); allocs > 1 {
		t.Errorf("a read made %.1f allocations, want at most 1", allocs)
	}
	if allocs := testing.AllocsPerRun(50, func() {
		if err := u.write(context.Background(), []byte("pong"), from, cm); err != nil {
			t.Fatal(err)
		}
	}); allocs > 0 {
		t.Errorf("a write made %.1f allocations, want none", allocs)
	}
}

func TestUDPSocketWriteHonoursContext(t *testing.T) {
	u, at := listenSocket(t, "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := u.write(ctx, []byte("x"), at, nil); err != context.Canceled {
		t.Fatalf("write with a cancelled context: %v, want %v", err, context.Canceled)
	}
}
