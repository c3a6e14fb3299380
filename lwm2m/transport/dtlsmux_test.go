package transport

import (
	"time"

	"github.com/iotgate/iotgate/lwm2m/ratelog"
	"github.com/pion/dtls/v2/pkg/protocol/handshake"
	"log/slog"
	"net"
	"net/netip"
	"runtime"
	"testing"

	"github.com/pion/dtls/v2"
	"github.com/pion/dtls/v2/pkg/protocol"
)

// record builds a DTLS record: content type, epoch, body.
func record(ct protocol.ContentType, epoch uint16, body ...byte) []byte {
	b := []byte{byte(ct), 0xfe, 0xfd, byte(epoch >> 8), byte(epoch), 0, 0, 0, 0, 0, 1, byte(len(body) >> 8), byte(len(body))}
	return append(b, body...)
}

// handshakeMsg builds a whole (unfragmented) handshake message.
func handshakeMsg(typ handshake.Type, seq uint16, body ...byte) []byte {
	n := len(body)
	h := []byte{byte(typ), byte(n >> 16), byte(n >> 8), byte(n), byte(seq >> 8), byte(seq), 0, 0, 0, byte(n >> 16), byte(n >> 8), byte(n)}
	return append(h, body...)
}

// helloWith builds a ClientHello record with the given cookie.
func helloWith(cookie []byte) []byte {
	body := make([]byte, 2+32) // version, random
	body = append(body, 0)     // session id length
	body = append(body, byte(len(cookie)))
	body = append(body, cookie...)
	body = append(body, 0, 2, 0xc0, 0xa8, 1, 0) // a cipher suite, null compression
	seq := uint16(0)
	if len(cookie) > 0 {
		seq = 1
	}
	return record(protocol.ContentTypeHandshake, 0, handshakeMsg(handshake.TypeClientHello, seq, body...)...)
}

// testCookie is the cookie the tests' second ClientHellos echo.
var testCookie = []byte{0xaa, 0xbb}

// clientHello builds a ClientHello record, with or without testCookie.
func clientHello(cookie bool) []byte {
	if cookie {
		return helloWith(testCookie)
	}
	return helloWith(nil)
}

// verifyRequest builds a HelloVerifyRequest record with cookie.
func verifyRequest(cookie []byte) []byte {
	body := append([]byte{0xfe, 0xfd, byte(len(cookie))}, cookie...)
	return record(protocol.ContentTypeHandshake, 0, handshakeMsg(handshake.TypeHelloVerifyRequest, 0, body...)...)
}

func TestLwM2MMuxRouting(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	m := newMux(pc, 2, 4, 4, time.Minute)
	defer pc.Close()
	dev := netip.MustParseAddrPort("10.0.0.1:5000")
	appData := record(protocol.ContentTypeApplicationData, 1, 1, 2, 3)

	if c, _ := m.route(appData, dev, time.Now()); c != nil {
		t.Fatal("application data from an unknown address opened a session")
	}
	s1, _ := m.route(clientHello(false), dev, time.Now())
	if s1 == nil || len(m.accept) != 1 {
		t.Fatal("a ClientHello did not open a session")
	}
	if c, _ := m.route(clientHello(true), dev, time.Now()); c != s1 {
		t.Fatal("the second ClientHello of a handshake went elsewhere")
	}
	m.established(s1)
	m.byCID["id"], s1.cid = s1, "id"

	// The device reboots: a fresh ClientHello opens a pending session
	// beside the established one, which keeps the application data.
	s2, _ := m.route(clientHello(false), dev, time.Now())
	if s2 == nil || s2 == s1 || m.pending[dev] != s2 {
		t.Fatal("a ClientHello from an established address did not open a pending session")
	}
	if c, _ := m.route(appData, dev, time.Now()); c != s1 {
		t.Fatal("application data left the established session")
	}
	if c, _ := m.route(clientHello(true), dev, time.Now()); c != s2 {
		t.Fatal("the cookie ClientHello did not reach the pending session")
	}
	if c, _ := m.route(record(protocol.ContentTypeHandshake, 1, 9, 9), dev, time.Now()); c != s2 {
		t.Fatal("handshake records did not reach the pending session")
	}
	// Another fresh ClientHello abandons the pending handshake.
	s3, abandoned := m.route(clientHello(false), dev, time.Now())
	if len(abandoned) != 1 || abandoned[0] != s2 || s3 == nil || m.pending[dev] != s3 {
		t.Fatal("a fresh ClientHello did not replace the pending handshake")
	}
	_ = abandoned[0].Close()
	// Its handshake completes: the address moves to it; the old session
	// keeps its Connection ID.
	m.established(s3)
	if c, _ := m.route(appData, dev, time.Now()); c != s3 {
		t.Fatal("the address did not move to the new session")
	}
	// A record with the old session's Connection ID reaches it from any
	// address (its NAT binding moved).
	cidRecord := []byte{byte(protocol.ContentTypeConnectionID), 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 2, 'i', 'd', 0, 3, 1, 2, 3}
	if c, _ := m.route(cidRecord, netip.MustParseAddrPort("10.0.0.2:7000"), time.Now()); c != s1 {
		t.Fatal("a Connection ID record was not routed by its ID")
	}
	if c, _ := m.route(appData, netip.MustParseAddrPort("10.9.9.9:1"), time.Now()); c != nil {
		t.Fatal("application data from a stranger opened a session")
	}
	_ = s1.Close()
	_ = s3.Close()
	if len(m.byAddr) != 0 || len(m.pending) != 0 || len(m.byCID) != 0 || m.open != 0 {
		t.Fatalf("closed sessions still routed: %v %v %v %d", m.byAddr, m.pending, m.byCID, m.open)
	}
}

// A fleet coming back after an outage sends its first flights at once.
// The listener may run max_handshakes handshakes at once, and its mux
// holds as many new sessions until the accept loop starts them; only a
// ClientHello beyond that is dropped (its client retransmits a second
// later). With a fixed backlog of 128, 1–4% of a 5,000-device
// re-register storm waited that second.
func TestLwM2MMuxHoldsABurstOfClientHellos(t *testing.T) {
	const maxHandshakes = 300
	l, err := ListenDTLS("127.0.0.1:0", &dtls.Config{}, DTLSLimits{MaxHandshakes: maxHandshakes}, ratelog.New(slog.New(slog.DiscardHandler), 0, 0, nil), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// The mux alone, as the listener sized it, with nobody accepting.
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	m, err := newUDPMux(pc, 0, cap(l.mux.accept), l.mux.maxUnverified, time.Minute, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range maxHandshakes {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5000)
		if c, _ := m.route(clientHello(false), from, time.Now()); c == nil {
			t.Fatalf("ClientHello %d of a burst of %d dropped", i+1, maxHandshakes)
		}
	}
	if c, _ := m.route(clientHello(false), netip.MustParseAddrPort("10.1.0.1:5000"), time.Now()); c != nil {
		t.Fatal("a ClientHello beyond the backlog opened a session")
	}
}

// A held DTLS session costs what pion and go-coap keep plus the mux's
// share, which every session of a 100,000-device fleet pays. The mux's
// share was 4.9 KiB, most of it a 64-datagram queue nobody fills.
func TestLwM2MMuxSessionFootprint(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector adds to every allocation")
	}
	const sessions = 2000
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	m, err := newUDPMux(pc, 0, sessions, sessions, time.Minute, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	hello := clientHello(false)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := range sessions {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), 5000)
		if c, _ := m.route(hello, from, time.Now()); c == nil {
			t.Fatalf("ClientHello %d dropped", i+1)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	per := float64(after.HeapAlloc-before.HeapAlloc) / sessions
	t.Logf("%.0f bytes of heap per new session", per)
	if per > 2560 {
		t.Errorf("a new session holds %.0f bytes of heap, want at most 2,560", per)
	}
	runtime.KeepAlive(m)
}

// pion reads every datagram of a session through ReadFrom; one from the
// session's own address costs no allocation.
func TestLwM2MMuxReadAllocatesNothing(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	m, err := newUDPMux(pc, 0, 4, 1, time.Minute, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	dev := netip.MustParseAddrPort("10.0.0.1:5000")
	c, _ := m.route(clientHello(false), dev, time.Now())
	if c == nil {
		t.Fatal("a ClientHello did not open a session")
	}
	in, out := []byte{1, 2, 3}, make([]byte, 16)
	read := func(from netip.AddrPort) net.Addr {
		c.in <- datagram{b: in, from: from}
		n, addr, err := c.ReadFrom(out)
		if err != nil || n != len(in) {
			t.Fatalf("ReadFrom: %d, %v", n, err)
		}
		return addr
	}
	if got := read(dev).String(); got != dev.String() {
		t.Errorf("a datagram from the session's address read as from %s", got)
	}
	moved := netip.MustParseAddrPort("10.0.0.2:7000")
	if got := read(moved).String(); got != moved.String() {
		t.Errorf("a datagram from %s read as from %s", moved, got)
	}
	if raceEnabled {
		return
	}
	if n := testing.AllocsPerRun(100, func() { read(dev) }); n != 0 {
		t.Errorf("a read allocates %.0f times, want 0", n)
	}
}
