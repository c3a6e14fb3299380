package transport

import (
	"net/netip"
	"testing"
	"time"
)

// FuzzHandshakeParsers: any datagram is read by the mux's parsers of
// unauthenticated records (and routed) without a panic or a read past
// its end, and what they return lies within it.
func FuzzHandshakeParsers(f *testing.F) {
	f.Add(clientHello(false))
	f.Add(clientHello(true))
	f.Add(verifyRequest(testCookie))
	f.Add(record(22, 0, handshakeMsg(16, 2, 0, 3, 'a', 'b', 'c')...))
	f.Add(append(clientHello(false), clientHello(true)...))
	f.Add(record(23, 1, 1, 2, 3))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, hello, cookie := classify(b); !hello && cookie != nil {
			t.Fatal("a cookie without a ClientHello")
		} else if len(cookie) > len(b) {
			t.Fatal("a cookie longer than the datagram")
		}
		if c, ok := sentCookie(b); ok && len(c) > len(b) {
			t.Fatal("a HelloVerifyRequest cookie longer than the datagram")
		}
		if id, ok := clientIdentity(b); ok && (id == "" || len(id) > len(b)) {
			t.Fatalf("identity %q from a %d-byte datagram", id, len(b))
		}
		_, _ = recordCID(b, 8)
		m := newMux(nil, 8, 4, 2, time.Minute)
		from := netip.MustParseAddrPort("10.0.0.1:1")
		if c, _ := m.route(b, from, time.Now()); c != nil {
			c.deliver(b, from, nil)
			c.learnCookie(b)
		}
	})
}
