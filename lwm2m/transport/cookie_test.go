package transport

import (
	"net"
	"net/netip"
	"testing"
	"time"
)

// A flood of first ClientHellos from spoofed addresses never echoes a
// cookie: the sessions pion has answered wait for theirs at most
// maxUnverified at a time and cookieWait long, get one HelloVerifyRequest
// per ClientHello, and a client that echoes its cookie leaves the bound.
func TestMuxBoundsHandshakesAwaitingTheirCookie(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const wait = time.Minute
	m := newMux(pc, 0, 8, 2, wait)
	t0 := time.Now()
	open := func(addr string) *muxConn {
		from := netip.MustParseAddrPort(addr)
		c, _ := m.route(clientHello(false), from, t0)
		if c == nil {
			t.Fatalf("a first ClientHello from %s opened no session", addr)
		}
		c.deliver(clientHello(false), from, nil)
		return c
	}
	a, b, c := open("10.0.0.1:1"), open("10.0.0.2:1"), open("10.0.0.3:1")
	for _, s := range []*muxConn{a, b} {
		if ok, ended := s.answer(verifyRequest([]byte{1, byte(s.key.Port())})); !ok || ended != nil {
			t.Fatalf("the first HelloVerifyRequest: sent %v, ended %v", ok, ended)
		}
	}
	if ok, _ := a.answer(verifyRequest([]byte{1})); ok {
		t.Error("a second HelloVerifyRequest for one ClientHello was sent (a retransmission to a spoofed address)")
	}
	ok, ended := c.answer(verifyRequest(testCookie))
	if !ok || ended != a {
		t.Fatalf("a third session awaiting its cookie: sent %v, ended %v, want the oldest ended", ok, ended)
	}
	if m.byAddr[a.key] != nil {
		t.Error("the evicted session is still routed")
	}
	// c's client echoes a wrong cookie, then the right one.
	m.route(helloWith([]byte{9, 9}), c.key, t0)
	if c.verified || m.unverified.Len() != 2 {
		t.Fatal("a wrong cookie verified the session")
	}
	if s, _ := m.route(clientHello(true), c.key, t0); s != c || !c.verified || m.unverified.Len() != 1 {
		t.Fatalf("the echoed cookie did not verify the session (routed to %p, verified %v)", s, c.verified)
	}
	if !c.provedAddress() || b.provedAddress() {
		t.Error("provedAddress disagrees with the cookies echoed")
	}
	// b never echoes: it ends cookieWait after its HelloVerifyRequest.
	_, ended2 := m.route(clientHello(false), netip.MustParseAddrPort("10.0.0.9:1"), time.Now().Add(wait))
	if len(ended2) != 1 || ended2[0] != b {
		t.Fatalf("expired: %v, want b", ended2)
	}
	if m.byAddr[c.key] != c {
		t.Error("the verified session was expired")
	}
}

// A ClientHello with a cookie from an address without a handshake opens
// none: pion could do nothing with it.
func TestMuxCookieHelloOpensNothing(t *testing.T) {
	m := newMux(nil, 0, 8, 2, time.Minute)
	if c, _ := m.route(clientHello(true), netip.MustParseAddrPort("10.0.0.1:1"), time.Now()); c != nil {
		t.Fatal("a second ClientHello opened a session")
	}
}

// The PSK identity of a ClientKeyExchange is read for the log of a
// failed handshake.
func TestMuxReadsThePSKIdentity(t *testing.T) {
	m := newMux(nil, 0, 8, 2, time.Minute)
	from := netip.MustParseAddrPort("10.0.0.1:1")
	c, _ := m.route(clientHello(false), from, time.Now())
	cke := record(22, 0, handshakeMsg(16, 2, 0, 5, 'n', 'b', '-', '0', '1')...)
	c.deliver(cke, from, nil)
	if got := c.identity(); got != "nb-01" {
		t.Errorf("identity %q, want nb-01", got)
	}
}
