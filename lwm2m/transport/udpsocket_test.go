package transport

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	coapNet "github.com/plgd-dev/go-coap/v3/net"
)

// listenSocket is a plain UDP socket and our reader of it (which
// switches its control messages on).
func listenSocket(t *testing.T, network, addr string) (*udpSocket, netip.AddrPort) {
	t.Helper()
	ua, err := net.ResolveUDPAddr(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.ListenUDP(network, ua)
	if err != nil {
		t.Skipf("cannot listen on %s %s here: %v", network, addr, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	u, err := newUDPSocket(c)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	return u, c.LocalAddr().(*net.UDPAddr).AddrPort()
}

// dialPeer is a client on a connected socket: it takes datagrams only
// from the address it sends to, as lwIP's, libcoap's and NATs do.
func dialPeer(t *testing.T, to netip.AddrPort) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		t.Skipf("cannot send to %v here: %v", to, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
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
// and the address it was sent to; and the answer sent along its path
// reaches a client that takes datagrams only from that address, also
// when it is not the one the kernel would have picked (127.0.0.3).
func TestUDPSocketAnswersFromTheAddressSentTo(t *testing.T) {
	lo := loopbackIndex(t)
	for _, tc := range []struct {
		name, network, listen, to string
	}{
		{"wildcard 0.0.0.0 (Go makes it dual-stack)", "udp", "0.0.0.0:0", "127.0.0.1"},
		{"wildcard 0.0.0.0, another address of the host", "udp", "0.0.0.0:0", "127.0.0.3"},
		{"IPv4-only wildcard, another address of the host", "udp4", "0.0.0.0:0", "127.0.0.3"},
		{"bound to an IPv4 address", "udp", "127.0.0.1:0", "127.0.0.1"},
		{"wildcard [::], IPv4 peer", "udp", "[::]:0", "127.0.0.3"},
		{"wildcard [::], IPv6 peer", "udp", "[::]:0", "::1"},
		{"bound to an IPv6 address", "udp", "[::1]:0", "::1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, at := listenSocket(t, tc.network, tc.listen)
			to := netip.MustParseAddr(tc.to)
			peer := dialPeer(t, netip.AddrPortFrom(to, at.Port()))
			if _, err := peer.Write([]byte("ping")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 64)
			n, from, path, err := u.read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if want := unmapped(peer.LocalAddr().(*net.UDPAddr).AddrPort()); string(buf[:n]) != "ping" || from != want {
				t.Fatalf("read %q from %v, want \"ping\" from %v", buf[:n], from, want)
			}
			if path == nil {
				t.Fatal("no answer path")
			}
			if dst, _ := netip.AddrFromSlice(path.cm.Dst); path.cm.IfIndex != lo || dst.Unmap() != to {
				t.Fatalf("control message %+v, want interface %d and destination %v", path.cm, lo, to)
			}
			if err := u.write(context.Background(), []byte("pong"), from, path); err != nil {
				t.Fatal(err)
			}
			if n, err := peer.Read(buf); err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("peer read %q, %v; want \"pong\" from %v", buf[:n], err, to)
			}
		})
	}
}

// The answer path handed on is the last one while datagrams come alike
// (to the same address, on the same interface), and a new one when the
// address changes; reading a datagram costs at most one allocation and
// writing to a peer none.
func TestUDPSocketReusesAnswerPaths(t *testing.T) {
	u, at := listenSocket(t, "udp", "0.0.0.0:0")
	one := dialPeer(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), at.Port()))
	other := dialPeer(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), at.Port()))
	buf := make([]byte, 64)
	roundTrip := func(peer *net.UDPConn) (netip.AddrPort, *answerPath) {
		if _, err := peer.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		_, from, path, err := u.read(buf)
		if err != nil {
			t.Fatal(err)
		}
		if err := u.write(context.Background(), []byte("pong"), from, path); err != nil {
			t.Fatal(err)
		}
		if _, err := peer.Read(buf); err != nil {
			t.Fatal(err)
		}
		return from, path
	}
	_, first := roundTrip(one)
	if _, again := roundTrip(one); again != first {
		t.Fatalf("second datagram to the same address got a new path %+v", again)
	}
	if _, moved := roundTrip(other); moved == first || moved.cm.Dst.Equal(first.cm.Dst) {
		t.Fatalf("datagram to another address got %+v, the first got %+v", moved, first)
	}
	if first.cm.Dst.String() != "127.0.0.1" {
		t.Fatalf("the first path changed: %+v", first.cm)
	}

	if raceEnabled {
		return // the allocation counts below are without the race detector
	}
	from, path := roundTrip(one)
	if _, err := one.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if allocs := testing.AllocsPerRun(50, func() {
		var err error
		if _, from, path, err = u.read(buf); err != nil {
			t.Fatal(err)
		}
		if _, err := one.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
	}); allocs > 1 {
		t.Errorf("a read made %.1f allocations, want at most 1", allocs)
	}
	if allocs := testing.AllocsPerRun(50, func() {
		if err := u.write(context.Background(), []byte("pong"), from, path); err != nil {
			t.Fatal(err)
		}
	}); allocs > 0 {
		t.Errorf("a write made %.1f allocations, want none", allocs)
	}
}

// A source address the kernel will not send from (as a datagram that
// came to a subnet's broadcast address would give) does not lose the
// answer: it goes out by the kernel's route, as go-coap sent it.
func TestUDPSocketFallsBackToTheRoute(t *testing.T) {
	lo := loopbackIndex(t)
	for _, tc := range []struct {
		name, network, listen, peer string
		notOurs                     net.IP
	}{
		{"IPv4", "udp4", "0.0.0.0:0", "127.0.0.1:0", net.IPv4(192, 0, 2, 1)},
		{"IPv4 broadcast", "udp4", "0.0.0.0:0", "127.0.0.1:0", net.IPv4(127, 255, 255, 255)},
		{"IPv6", "udp", "[::]:0", "[::1]:0", net.ParseIP("2001:db8::1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, at := listenSocket(t, tc.network, tc.listen)
			peer, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(tc.peer)))
			if err != nil {
				t.Skipf("no %s loopback here: %v", tc.name, err)
			}
			defer peer.Close()
			_ = peer.SetDeadline(time.Now().Add(5 * time.Second))
			to := peer.LocalAddr().(*net.UDPAddr).AddrPort()
			path := &answerPath{cm: &coapNet.ControlMessage{}, peer4: to.Addr().Is4(),
				oob: u.marshal(tc.notOurs, lo, to.Addr().Is4())}
			if err := u.write(context.Background(), []byte("pong"), to, path); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 8)
			n, src, err := peer.ReadFromUDPAddrPort(buf)
			if err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("peer read %q, %v", buf[:n], err)
			}
			if src.Port() != at.Port() {
				t.Fatalf("answer from %v, want the socket's port %d", src, at.Port())
			}
			// The path remembers the refusal: later datagrams go by the
			// route at once.
			if !path.refused.Load() {
				t.Fatal("the refused source is tried again at the next write")
			}
			if err := u.write(context.Background(), []byte("pong"), to, path); err != nil {
				t.Fatal(err)
			}
			if n, _, err := peer.ReadFromUDPAddrPort(buf); err != nil || string(buf[:n]) != "pong" {
				t.Fatalf("second answer: %q, %v", buf[:n], err)
			}
		})
	}
}

func TestUDPSocketWriteHonoursContext(t *testing.T) {
	u, at := listenSocket(t, "udp", "127.0.0.1:0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := u.write(ctx, []byte("x"), at, nil); err != context.Canceled {
		t.Fatalf("write with a cancelled context: %v, want %v", err, context.Canceled)
	}
}
