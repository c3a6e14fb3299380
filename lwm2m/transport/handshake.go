package transport

import (
	"github.com/pion/dtls/v2/pkg/protocol"
	"github.com/pion/dtls/v2/pkg/protocol/handshake"
	"github.com/pion/dtls/v2/pkg/protocol/recordlayer"
)

// The mux reads a few fields of the plaintext (epoch 0) handshake
// records of datagrams it has not authenticated: whether a datagram
// starts a handshake, the cookie of a ClientHello, the cookie of pion's
// HelloVerifyRequest and the PSK identity of a ClientKeyExchange. These
// parsers check every length against the datagram: a datagram is
// anyone's (FuzzHandshakeParsers).

// handshakeHeader is what the mux reads of an epoch-0 handshake message:
// its type and body, when the message is whole in one record (a
// fragment has ok false).
type handshakeMessage struct {
	typ  handshake.Type
	body []byte
}

// epoch0Handshakes calls fn with each whole epoch-0 handshake message of
// the datagram b, in order, until fn returns false.
func epoch0Handshakes(b []byte, fn func(handshakeMessage) bool) {
	const rec, hs = recordlayer.FixedHeaderSize, handshake.HeaderLength
	for len(b) >= rec {
		n := int(b[11])<<8 | int(b[12])
		if len(b) < rec+n {
			return
		}
		ct, epoch, frag := protocol.ContentType(b[0]), int(b[3])<<8|int(b[4]), b[rec:rec+n]
		b = b[rec+n:]
		if ct != protocol.ContentTypeHandshake || epoch != 0 {
			continue
		}
		for len(frag) >= hs {
			l := int(frag[1])<<16 | int(frag[2])<<8 | int(frag[3])
			off := int(frag[6])<<16 | int(frag[7])<<8 | int(frag[8])
			fl := int(frag[9])<<16 | int(frag[10])<<8 | int(frag[11])
			if len(frag) < hs+fl {
				return
			}
			if off == 0 && fl == l && !fn(handshakeMessage{typ: handshake.Type(frag[0]), body: frag[hs : hs+fl]}) {
				return
			}
			frag = frag[hs+fl:]
		}
	}
}

// helloCookie is the cookie of a ClientHello body (ok false: not a whole
// ClientHello). An empty cookie is a first ClientHello.
func helloCookie(body []byte) (cookie []byte, ok bool) {
	// client_version (2), random (32), session_id<0..32>, cookie<0..2^8-1>
	i := 2 + 32
	if len(body) <= i {
		return nil, false
	}
	i += 1 + int(body[i])
	if len(body) <= i {
		return nil, false
	}
	n := int(body[i])
	if len(body) < i+1+n {
		return nil, false
	}
	return body[i+1 : i+1+n], true
}

// verifyRequestCookie is the cookie of a HelloVerifyRequest body.
func verifyRequestCookie(body []byte) ([]byte, bool) {
	// server_version (2), cookie<0..2^8-1>
	if len(body) < 3 || len(body) < 3+int(body[2]) {
		return nil, false
	}
	return body[3 : 3+int(body[2])], true
}

// pskIdentity is the identity of a PSK ClientKeyExchange body
// (psk_identity<0..2^16-1> first, in the PSK and ECDHE_PSK exchanges).
func pskIdentity(body []byte) (string, bool) {
	if len(body) < 2 {
		return "", false
	}
	n := int(body[0])<<8 | int(body[1])
	if n == 0 || len(body) < 2+n {
		return "", false
	}
	return string(body[2 : 2+n]), true
}

// firstHello reads a datagram's first ClientHello: found, and its cookie.
func firstHello(b []byte) (found bool, cookie []byte) {
	epoch0Handshakes(b, func(m handshakeMessage) bool {
		if m.typ != handshake.TypeClientHello {
			return true
		}
		cookie, found = helloCookie(m.body)
		return false
	})
	return found, cookie
}

// sentCookie is the cookie of a HelloVerifyRequest in a datagram pion
// sends.
func sentCookie(b []byte) (cookie []byte, ok bool) {
	epoch0Handshakes(b, func(m handshakeMessage) bool {
		if m.typ != handshake.TypeHelloVerifyRequest {
			return true
		}
		cookie, ok = verifyRequestCookie(m.body)
		return false
	})
	return cookie, ok
}

// clientIdentity is the PSK identity of a ClientKeyExchange in a
// datagram.
func clientIdentity(b []byte) (id string, ok bool) {
	epoch0Handshakes(b, func(m handshakeMessage) bool {
		if m.typ != handshake.TypeClientKeyExchange {
			return true
		}
		id, ok = pskIdentity(m.body)
		return false
	})
	return id, ok
}
