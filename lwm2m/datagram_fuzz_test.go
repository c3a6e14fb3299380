package lwm2m_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"
	"time"

	"github.com/iotgate/iotgate/lwm2m"
	"github.com/iotgate/iotgate/registry/guard"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// FuzzLwM2MDatagram feeds one datagram, from a fresh address, to the NoSec
// listener of a running server (one for the whole run, with a NoSec device
// "plain" and a DTLS-only one "secure"), whatever the server makes of it:
// a Register, an Update, a stray request, garbage. After each, the server
// still answers a stray GET from that address, and no answer to the
// datagram other than a success is larger than it (RFC 9175 §2.4: no
// amplification towards a peer that may be spoofed).
func FuzzLwM2MDatagram(f *testing.F) {
	register := func(ep, lt string, payload string) []byte {
		m := message.Message{Code: codes.POST, Type: message.Confirmable, MessageID: 0x1234, Token: []byte{0xbe, 0xef},
			Payload: []byte(payload), Options: message.Options{
				{ID: message.URIPath, Value: []byte("rd")},
				{ID: message.ContentFormat, Value: []byte{40}},
				{ID: message.URIQuery, Value: []byte("ep=" + ep)},
				{ID: message.URIQuery, Value: []byte("lt=" + lt)},
				{ID: message.URIQuery, Value: []byte("lwm2m=1.0")},
				{ID: message.URIQuery, Value: []byte("b=U")},
			}}
		out := make([]byte, 1024)
		n, err := coder.DefaultCoder.Encode(m, out)
		if err != nil {
			f.Fatal(err)
		}
		return out[:n]
	}
	// Registers as the LwM2M clients the e2e tests drive send them.
	f.Add(register("plain", "300", "</>;rt=\"oma.lwm2m\",</1/0>,</3/0>,</5/0>,</19/0>,</19/1>"))
	f.Add(register("secure", "86400", "</3/0>,</1/0>"))
	f.Add(register("nobody", "30", `</3303/0>;ver="1.1",</3>`))
	f.Add(register("plain", "x", "<"))
	f.Add([]byte{0x40, 0x01, 0x12, 0x34})                                        // CON GET, no path
	f.Add([]byte{0x42, 0x01, 0x12, 0x34, 0xbe, 0xef, 0xb2, 'r', 'd'})            // GET /rd
	f.Add([]byte{0x42, 0x02, 0x12, 0x34, 0xbe, 0xef, 0xb2, 'r', 'd', 0x01, 'x'}) // POST /rd/x
	f.Add([]byte{0x40, 0x00, 0x12, 0x34})                                        // ping
	f.Add([]byte{0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0})                      // a DTLS record on the NoSec port
	f.Add([]byte{0xff})
	fx := newFixture(f, func(o *lwm2m.Options) {
		o.DTLSListen = ""
		o.Guard = guard.NewLocal(guard.Config{}) // no bans: every input meets the whole server
	})
	fx.device("plain", false)
	fx.device("secure", true)
	addr := fx.srv.UDPAddr()
	f.Fuzz(func(t *testing.T, datagram []byte) {
		if len(datagram) > 1500 {
			t.Skip("larger than a datagram on the path")
		}
		c, err := net.Dial("udp", addr.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, err := c.Write(datagram); err != nil {
			t.Fatal(err)
		}
		mid := uint16(0x4242)
		if len(datagram) >= 4 && binary.BigEndian.Uint16(datagram[2:4]) == mid {
			mid++
		}
		// The probe: a stray CON GET /probe, which gets a 4.04.
		probe := []byte{0x41, 0x01, byte(mid >> 8), byte(mid), 0x7a, 0xb5, 'p', 'r', 'o', 'b', 'e'}
		if _, err := c.Write(probe); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 2048)
		deadline := time.Now().Add(5 * time.Second)
		for {
			_ = c.SetReadDeadline(deadline)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("no answer to a probe after the datagram %x: %v", datagram, err)
			}
			ans := buf[:n]
			if n >= 4 && ans[0]&0x20 != 0 && bytes.Equal(ans[2:4], probe[2:4]) {
				return // the probe's answer: the server is alive
			}
			m := message.Message{Options: make(message.Options, 0, 16)}
			if _, err := coder.DefaultCoder.Decode(ans, &m); err == nil && (m.Code>>5 == 2 || m.Code>>5 == 0 && m.Code != 0) {
				continue // a success, or the server's own request to a device it registered
			}
			if n > len(datagram) {
				t.Fatalf("answer %x of %d bytes to the datagram %x of %d", ans, n, datagram, len(datagram))
			}
		}
	})
}
