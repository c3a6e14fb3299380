package transport

import (
	"net/netip"
	"testing"
	"time"
)

// A flood of first ClientHellos from spoofed addresses never echoes a
// cookie: at most maxUnverified handshakes wait for theirs, each at most
// cookieWait; at the bound a new one ends the oldest once pion has
// answered it and its client has had a quarter of cookieWait, and is
// dropped until then; a client that echoes its cookie leaves the bound.
func TestMuxBoundsHandshakesAwaitingTheirCookie(t *testing.T) {
	const wait = time.Minute
	m := newMux(nil, 0, 8, 2, wait)
	t0 := time.Now()
	openAt := func(addr string, at time.Time) *muxConn {
		t.Helper()
		from := netip.MustParseAddrPort(addr)
		c, _ := m.route(clientHello(false), from, at)
		return c
	}
	open := func(addr string) *muxConn { return openAt(addr, t0) }
	a, b := open("10.0.0.1:1"), open("10.0.0.2:1")
	if a == nil || b == nil {
		t.Fatal("first ClientHellos within the bound opened no session")
	}
	if open("10.0.0.3:1") != nil {
		t.Fatal("a ClientHello beyond the bound, pion having answered none, opened a session")
	}
	a.learnCookie(verifyRequest([]byte{1, 1}))
	if open("10.0.0.3:1") != nil {
		t.Fatal("at the bound, a ClientHello ended a handshake answered a moment ago")
	}
	c := openAt("10.0.0.3:1", t0.Add(wait/evictAfter))
	if c == nil {
		t.Fatal("at the bound, a ClientHello did not end the oldest answered handshake")
	}
	if m.byAddr[a.key] != nil || m.unverified.Len() != 2 {
		t.Error("the evicted session is still routed or counted")
	}
	c.learnCookie(verifyRequest(testCookie))
	// c's client echoes a wrong cookie, then the right one.
	m.route(helloWith([]byte{9, 9}), c.key, t0)
	if c.proven.Load() || m.unverified.Len() != 2 {
		t.Fatal("a wrong cookie verified the session")
	}
	if s, _ := m.route(clientHello(true), c.key, t0); s != c || !c.proven.Load() || m.unverified.Len() != 1 {
		t.Fatalf("the echoed cookie did not verify the session (routed to %p, verified %v)", s, c.proven.Load())
	}
	if !c.provedAddress() || b.provedAddress() {
		t.Error("provedAddress disagrees with the cookies echoed")
	}
	// b never echoes: it ends cookieWait after its ClientHello.
	_, ended := m.route(clientHello(false), netip.MustParseAddrPort("10.0.0.9:1"), t0.Add(wait))
	if len(ended) != 1 || ended[0] != b {
		t.Fatalf("expired: %v, want b", ended)
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

// A client from the address of one that completed a handshake does not
// queue behind a flood: its ClientHello skips the unverified bound.
func TestMuxKnownAddressSkipsTheBound(t *testing.T) {
	m := newMux(nil, 0, 8, 1, time.Minute)
	now := time.Now()
	dev := netip.MustParseAddrPort("10.0.0.1:1")
	c, _ := m.route(clientHello(false), dev, now)
	m.established(c)
	if s, _ := m.route(clientHello(false), netip.MustParseAddrPort("10.9.0.1:1"), now); s == nil {
		t.Fatal("the first stranger was refused")
	}
	if s, _ := m.route(clientHello(false), netip.MustParseAddrPort("10.9.0.2:1"), now); s != nil {
		t.Fatal("a stranger beyond the bound opened a session")
	}
	// The device comes back from a new port (a new socket, a NAT
	// binding) while the bound is full.
	if s, _ := m.route(clientHello(false), netip.MustParseAddrPort("10.0.0.1:2"), now); s == nil {
		t.Fatal("a known address queued behind the strangers")
	}
}

func TestKnownAddrsForgetsTheLeastRecent(t *testing.T) {
	k := newKnownAddrs(2)
	a, b, c := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")
	k.add(a)
	k.add(b)
	k.add(a) // a is the most recent now
	k.add(c)
	if !k.has(a) || k.has(b) || !k.has(c) || k.order.Len() != 2 || len(k.at) != 2 {
		t.Fatalf("known: a %v b %v c %v (%d, %d)", k.has(a), k.has(b), k.has(c), k.order.Len(), len(k.at))
	}
}
