package lwm2m_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// rawExchange sends datagram req from a fresh NoSec socket and returns
// the answer's bytes (nil: none within wait).
func rawExchange(t *testing.T, server net.Addr, req []byte, wait time.Duration) []byte {
	t.Helper()
	c, err := net.Dial("udp", server.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return nil
	}
	return buf[:n]
}

// rawRegister is a confirmable Register of ep with message ID 0x1234 and
// token 0xbeef, so that every refusal's answer can be compared byte for
// byte.
func rawRegister(t *testing.T, ep string) []byte {
	t.Helper()
	m := message.Message{Code: codes.POST, Type: message.Confirmable, MessageID: 0x1234, Token: []byte{0xbe, 0xef},
		Payload: []byte("</3/0>,</1/0>")}
	m.Options = message.Options{
		{ID: message.URIPath, Value: []byte("rd")},
		{ID: message.URIQuery, Value: []byte("ep=" + ep)},
		{ID: message.URIQuery, Value: []byte("lt=300")},
	}
	out := make([]byte, 512)
	n, err := coder.DefaultCoder.Encode(m, out)
	if err != nil {
		t.Fatal(err)
	}
	return out[:n]
}

// TestLwM2MNoSecRefusalsAreAlike: a NoSec Register refused for any cause
// gets the very same answer, no larger than the request, so that a
// stranger learns neither which endpoints exist nor their state; the
// cause goes to the log.
func TestLwM2MNoSecRefusalsAreAlike(t *testing.T) {
	logs := &logBuffer{}
	f := newFixture(t, func(o *lwm2m.Options) { o.Logger = slog.New(slog.NewTextHandler(logs, nil)) })
	f.device("secure", true)
	frozen := f.device("frozen", false)
	if err := f.reg.SetFrozen(context.Background(), "p", frozen.DeviceID, true); err != nil {
		t.Fatal(err)
	}
	// A device of an MQTT product: no LwM2M endpoint.
	if _, err := f.reg.CreateProduct(context.Background(), registry.Product{ProjectID: "p", ProductID: "mq", Name: "MQ", DeviceType: "Meter", ProtocolType: "MQTT"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.CreateDevice(context.Background(), registry.NewDevice{ProjectID: "p", NodeID: "mqttdev", ProductID: "mq",
		Auth: registry.AuthInfo{Secret: secret}}); err != nil {
		t.Fatal(err)
	}
	var first []byte
	for _, tc := range []struct{ name, ep, logged string }{
		{"unknown endpoint", "nobody", "unknown endpoint nobody"},
		{"secure-only device", "secure", "requires DTLS"},
		{"frozen device", "frozen", "is frozen"},
		{"wrong product", "mqttdev", "unknown endpoint mqttdev"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := rawRegister(t, tc.ep)
			ans := rawExchange(t, f.srv.UDPAddr(), req, 2*time.Second)
			if ans == nil {
				t.Fatal("no answer")
			}
			m := message.Message{Options: make(message.Options, 0, 16)}
			if _, err := coder.DefaultCoder.Decode(ans, &m); err != nil || m.Code != codes.Forbidden {
				t.Fatalf("answer %x (%v): want 4.03", ans, err)
			}
			if first == nil {
				first = ans
			} else if !bytes.Equal(ans, first) {
				t.Errorf("answer %x differs from the first refusal's %x", ans, first)
			}
			if len(ans) > len(req) {
				t.Errorf("answer of %d bytes to a request of %d", len(ans), len(req))
			}
			if !strings.Contains(logs.String(), tc.logged) {
				t.Errorf("the log lacks the cause %q:\n%s", tc.logged, logs)
			}
		})
	}
}

// TestLwM2MNoSecAnswersNoLargerThanRequests: no NoSec answer is larger
// than its request (RFC 9175 §2.4: a spoofed request must not be
// amplified), stray GETs' 4.04s included; a diagnostic stays where it
// fits.
func TestLwM2MNoSecAnswersNoLargerThanRequests(t *testing.T) {
	f := newFixture(t, nil)
	f.device("plain", false)
	long := make([]byte, 40)
	_, _ = rand.Read(long)
	for _, tc := range []struct {
		name   string
		m      message.Message
		path   string
		want   codes.Code
		withDx bool // a diagnostic fits
	}{
		{name: "bare GET", m: message.Message{Code: codes.GET, Type: message.Confirmable, MessageID: 1}, want: codes.NotFound},
		{name: "GET with a token", m: message.Message{Code: codes.GET, Type: message.Confirmable, MessageID: 2, Token: []byte{1, 2, 3, 4, 5, 6, 7, 8}}, want: codes.NotFound},
		{name: "GET /rd", m: message.Message{Code: codes.GET, Type: message.NonConfirmable, MessageID: 3}, path: "/rd", want: codes.MethodNotAllowed},
		{name: "POST to an unknown registration", m: message.Message{Code: codes.POST, Type: message.Confirmable, MessageID: 4}, path: "/rd/x", want: codes.NotFound},
		{name: "a long stray request", m: message.Message{Code: codes.PUT, Type: message.Confirmable, MessageID: 5, Payload: long}, path: "/somewhere/else", want: codes.NotFound, withDx: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			for _, seg := range strings.Split(strings.Trim(tc.path, "/"), "/") {
				if seg != "" {
					m.Options = append(m.Options, message.Option{ID: message.URIPath, Value: []byte(seg)})
				}
			}
			req := make([]byte, 256)
			n, err := coder.DefaultCoder.Encode(m, req)
			if err != nil {
				t.Fatal(err)
			}
			req = req[:n]
			ans := rawExchange(t, f.srv.UDPAddr(), req, 2*time.Second)
			if ans == nil {
				t.Fatal("no answer")
			}
			got := message.Message{Options: make(message.Options, 0, 16)}
			if _, err := coder.DefaultCoder.Decode(ans, &got); err != nil || got.Code != tc.want {
				t.Fatalf("answer %x (%v), want %s", ans, err, tc.want)
			}
			if len(ans) > len(req) {
				t.Errorf("answer of %d bytes to a request of %d", len(ans), len(req))
			}
			if tc.withDx != (len(got.Payload) > 0) {
				t.Errorf("diagnostic %q, want one: %v", got.Payload, tc.withDx)
			}
		})
	}
}

// firstClientHello is a DTLS 1.2 ClientHello without a cookie, offering
// TLS_PSK_WITH_AES_128_CCM_8: pion answers it with a HelloVerifyRequest.
func firstClientHello() []byte {
	body := []byte{0xfe, 0xfd}
	body = append(body, make([]byte, 32)...) // random
	body = append(body, 0, 0)                // session id, cookie
	body = append(body, 0, 2, 0xc0, 0xa8, 1, 0)
	n := len(body)
	hs := append([]byte{1, 0, byte(n >> 8), byte(n), 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)}, body...)
	return append([]byte{22, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(hs) >> 8), byte(len(hs))}, hs...)
}

// TestLwM2MDTLSOneHelloVerifyRequestPerClientHello: a ClientHello from an
// address that never echoes the cookie (a spoofed one) gets one
// HelloVerifyRequest, smaller than itself, and nothing more (RFC 6347
// §4.2.1: a server does not retransmit it; the client retransmits its
// ClientHello): the DTLS port does not amplify a spoofed request.
func TestLwM2MDTLSOneHelloVerifyRequestPerClientHello(t *testing.T) {
	f := newFixture(t, nil)
	c, err := net.Dial("udp", f.srv.DTLSAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hello := firstClientHello()
	if _, err := c.Write(hello); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(3500 * time.Millisecond))
	for {
		n, err := c.Read(buf)
		if err != nil {
			break
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
	if len(got) != 1 {
		t.Fatalf("%d datagrams in answer to one ClientHello, want one HelloVerifyRequest", len(got))
	}
	if hvr := got[0]; len(hvr) < 26 || hvr[0] != 22 || hvr[13] != 3 {
		t.Fatalf("answer %x is not a HelloVerifyRequest", hvr)
	} else if len(hvr) >= len(hello) {
		t.Errorf("a %d-byte HelloVerifyRequest answers a %d-byte ClientHello", len(hvr), len(hello))
	}
}

// TestLwM2MNoSecShortReplayNotAnswered: go-coap answers a message ID it
// has answered before from its cache, whatever the message holds; a
// datagram shorter than the request first sent with its ID must not draw
// that request's (longer) answer, or a spoofer sends one long request and
// then many short ones. A byte-identical retransmission is still
// answered. (Found by FuzzLwM2MDatagram: a 13-byte POST /rd drew a
// 67-byte 4.00.)
func TestLwM2MNoSecShortReplayNotAnswered(t *testing.T) {
	f := newFixture(t, nil)
	long := message.Message{Code: codes.PUT, Type: message.Confirmable, MessageID: 0x0777, Payload: bytes.Repeat([]byte("x"), 60),
		Options: message.Options{{ID: message.URIPath, Value: []byte("somewhere")}}}
	req := make([]byte, 256)
	n, err := coder.DefaultCoder.Encode(long, req)
	if err != nil {
		t.Fatal(err)
	}
	req = req[:n]
	// CON GET, and a CON with an empty code and a token (not a ping, so
	// go-coap looks it up in its cache too), with the same message ID.
	shorts := [][]byte{{0x40, 0x01, 0x07, 0x77}, {0x41, 0x00, 0x07, 0x77, 0x37}}
	c, err := net.Dial("udp", f.srv.UDPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	read := func() []byte {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 2048)
		n, err := c.Read(buf)
		if err != nil {
			return nil
		}
		return buf[:n]
	}
	for _, d := range [][]byte{req, req} { // the request, then its retransmission
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
		if ans := read(); ans == nil || len(ans) <= 4 {
			t.Fatalf("answer %x to a %d-byte request, want its 4.04 with a diagnostic", ans, len(d))
		}
	}
	for _, short := range shorts {
		if _, err := c.Write(short); err != nil {
			t.Fatal(err)
		}
		if ans := read(); len(ans) > len(short) {
			t.Fatalf("answer %x of %d bytes to the %d-byte datagram %x reusing the message ID", ans, len(ans), len(short), short)
		}
	}
}
