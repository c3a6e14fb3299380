package transport

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m/ratelog"
	"github.com/pion/dtls/v2/pkg/protocol"
)

// cidRecord builds a tls12_cid record (RFC 9146 §4) carrying cid.
func cidRecord(cid []byte, body ...byte) []byte {
	b := []byte{byte(protocol.ContentTypeConnectionID), 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 1}
	b = append(b, cid...)
	b = append(b, byte(len(body)>>8), byte(len(body)))
	return append(b, body...)
}

// clashingNodes finds two node names that share a tag.
func clashingNodes(t *testing.T) (string, string) {
	seen := map[NodeTag]string{}
	for i := range 1 << 20 {
		n := fmt.Sprintf("n%d", i)
		if o, ok := seen[TagOf(n)]; ok {
			return o, n
		}
		seen[TagOf(n)] = n
	}
	t.Fatal("no two names share a tag")
	return "", ""
}

func testForwarder(t *testing.T, node string) *Forwarder {
	t.Helper()
	f, err := ListenForward("127.0.0.1:0", node, ratelog.New(slog.New(slog.DiscardHandler), 0, 0, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func TestForwarderSetPeers(t *testing.T) {
	x, y := clashingNodes(t)
	f := testForwarder(t, "node-1")
	a2, a3 := netip.MustParseAddrPort("10.0.0.2:7001"), netip.MustParseAddrPort("10.0.0.3:7001")
	clashes := f.SetPeers([]Peer{{Node: "node-1", Forward: netip.MustParseAddrPort("10.0.0.1:7001")},
		{Node: "node-2", Forward: a2}, {Node: "node-3", Forward: a3}, {Node: "node-4"}})
	if len(clashes) != 0 {
		t.Fatalf("clashes %v", clashes)
	}
	tab := f.peers.Load()
	if p := tab.byTag[TagOf("node-2")]; p == nil || p.Forward != a2 || p.path.via != a2 {
		t.Fatalf("node-2: %+v", p)
	}
	if tab.byTag[TagOf("node-1")] != nil || len(tab.byAddr) != 2 || tab.byTag[TagOf("node-4")] != nil {
		t.Fatalf("table lists itself or a node without an address: %+v", tab)
	}
	path := tab.byTag[TagOf("node-2")].path
	f.SetPeers([]Peer{{Node: "node-2", Forward: a2}})
	if f.peers.Load().byTag[TagOf("node-2")].path != path {
		t.Fatal("an unchanged peer's answer path was replaced")
	}

	// Two others sharing a tag: reported, the first by name kept.
	if c := f.SetPeers([]Peer{{Node: y, Forward: a3}, {Node: x, Forward: a2}}); len(c) != 1 || c[0] != [2]string{x, y} {
		t.Fatalf("clashes %v, want [%s %s]", c, x, y)
	}
	if p := f.peers.Load().byTag[TagOf(x)]; p == nil || p.Node != x {
		t.Fatalf("tag of %s goes to %+v", x, p)
	}
	// Another node sharing this node's tag: reported, its records stay here.
	g := testForwarder(t, x)
	if c := g.SetPeers([]Peer{{Node: x}, {Node: y, Forward: a3}}); len(c) != 1 || c[0] != [2]string{x, y} {
		t.Fatalf("clashes %v", c)
	}
	if g.peers.Load().byTag[TagOf(x)] != nil {
		t.Fatal("this node's tag forwards")
	}
}

// The mux of a node forwards what another node's CID names, and only
// that: its own sessions, its own tag, ClientHellos, and a flight from an
// address with an established session stay.
func TestMuxForwardDecision(t *testing.T) {
	self, other := TagOf("node-1"), TagOf("node-2")
	mine, theirs := TaggedCIDGenerator(self, 8)(), TaggedCIDGenerator(other, 8)()
	from := netip.MustParseAddrPort("192.0.2.1:5684")
	// The last flight of a client's handshake: epoch-0 handshake record,
	// then the Finished under the CID.
	flight := func(cid []byte) []byte {
		return append(record(protocol.ContentTypeHandshake, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), cidRecord(cid, 1, 2, 3)...)
	}
	for _, tc := range []struct {
		name        string
		b           []byte
		mayForward  bool
		established bool // the address has an established session
		forward     bool
	}{
		{"other node's cid", cidRecord(theirs, 1), true, false, true},
		{"other node's cid, address established here", cidRecord(theirs, 1), true, true, true},
		{"other node's cid, frame from a node", cidRecord(theirs, 1), false, false, false},
		{"own tag, unknown cid", cidRecord(mine, 1), true, false, false},
		{"handshake flight with other node's cid", flight(theirs), true, false, true},
		{"handshake flight, address established here", flight(theirs), true, true, false},
		{"handshake flight with own cid", flight(mine), true, false, false},
		{"client hello", clientHello(false), true, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newMux(nil, 8, 8, 8, time.Minute)
			m.fwd = &Forwarder{self: self}
			if tc.established {
				c, _ := m.route(clientHello(false), from, time.Now())
				m.established(c)
			}
			c, owner, forward, _ := m.dispatch(tc.b, from, time.Now(), tc.mayForward)
			if forward != tc.forward {
				t.Fatalf("forward %v, want %v (session %v)", forward, tc.forward, c)
			}
			if tc.forward && (owner != other || c != nil) {
				t.Fatalf("owner %04x session %v", uint16(owner), c)
			}
		})
	}

	// A CID a session here has stays here, whatever its tag.
	m := newMux(nil, 8, 8, 8, time.Minute)
	m.fwd = &Forwarder{self: self}
	s, _ := m.route(clientHello(false), from, time.Now())
	m.established(s)
	m.byCID[string(theirs)] = s
	if c, _, forward, _ := m.dispatch(cidRecord(theirs, 1), netip.MustParseAddrPort("192.0.2.2:1"), time.Now(), true); c != s || forward {
		t.Fatalf("session %v forward %v", c, forward)
	}
}

// Datagrams and frames on real sockets: a record for another node's CID
// reaches that node's forward address framed with the device's address;
// an answer framed by a known node reaches the device from the public
// socket, byte for byte; frames from strangers and malformed frames are
// dropped.
func TestForwarderSockets(t *testing.T) {
	udp := func() *net.UDPConn {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	pc, peer, device, stranger := udp(), udp(), udp(), udp()
	unknown := make(chan struct{}, 8)
	f, err := ListenForward("127.0.0.1:0", "node-1", ratelog.New(slog.New(slog.DiscardHandler), 0, 0, nil),
		func() { unknown <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	f.SetPeers([]Peer{{Node: "node-2", Forward: peer.LocalAddr().(*net.UDPAddr).AddrPort()}})
	m, err := newUDPMux(pc, 8, 8, 8, time.Minute, nil, f)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(); f.Close() })
	fwdAddr := f.Addr().(*net.UDPAddr)
	devAddr := device.LocalAddr().(*net.UDPAddr).AddrPort()
	read := func(c *net.UDPConn) ([]byte, netip.AddrPort, bool) {
		buf := make([]byte, 2*maxDatagram)
		_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		n, from, err := c.ReadFromUDPAddrPort(buf)
		return buf[:n], from, err == nil
	}

	// The device's record for node-2's CID goes to node-2, framed.
	rec := cidRecord(TaggedCIDGenerator(TagOf("node-2"), 8)(), 7, 7, 7)
	if _, err := device.WriteToUDP(rec, pc.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	fr, from, ok := read(peer)
	if !ok || from != fwdAddr.AddrPort() {
		t.Fatalf("node-2 got nothing from the forward address (from %v)", from)
	}
	if k, dev, b, err := parseFrame(fr); err != nil || k != fwdFromDevice || dev != devAddr || !bytes.Equal(b, rec) {
		t.Fatalf("frame kind %d dev %v err %v", k, dev, err)
	}

	// A record for an unknown node's CID: dropped, the peer list asked for.
	if _, err := device.WriteToUDP(cidRecord(TaggedCIDGenerator(TagOf("node-9"), 8)(), 1), pc.LocalAddr().(*net.UDPAddr)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-unknown:
	case <-time.After(2 * time.Second):
		t.Fatal("an unknown tag did not ask for the peer list")
	}
	if _, _, ok := read(peer); ok {
		t.Fatal("a record for an unknown node was forwarded")
	}

	// node-2's answer goes to the device from the public socket.
	answer := []byte("answer-datagram")
	if _, err := peer.WriteToUDP(appendFrame(nil, fwdToDevice, devAddr, answer), fwdAddr); err != nil {
		t.Fatal(err)
	}
	got, from, ok := read(device)
	if !ok || !bytes.Equal(got, answer) || from != pc.LocalAddr().(*net.UDPAddr).AddrPort() {
		t.Fatalf("device got %q from %v", got, from)
	}

	// A stranger's frame, and a known node's malformed one, are dropped.
	if _, err := stranger.WriteToUDP(appendFrame(nil, fwdToDevice, devAddr, answer), fwdAddr); err != nil {
		t.Fatal(err)
	}
	bad := appendFrame(nil, fwdToDevice, devAddr, answer)
	bad[3] = 9
	if _, err := peer.WriteToUDP(bad, fwdAddr); err != nil {
		t.Fatal(err)
	}
	if got, from, ok := read(device); ok {
		t.Fatalf("device got %q from %v", got, from)
	}
}
