package lwm2mclient

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/pion/dtls/v2"
	dtlsnet "github.com/pion/dtls/v2/pkg/net"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// Bootstrapped is what an LwM2M Bootstrap server wrote during a
// client-initiated bootstrap.
type Bootstrapped struct {
	// Ops are the server's requests in the order they came, as
	// "DELETE /0", "PUT /0/1", "POST /bs".
	Ops []string
	// Formats are the content formats of the writes, in order.
	Formats []uint16
	// Values are the resources written, by path.
	Values map[format.Path]format.Value
}

// Account returns the LwM2M server account written into Security
// instance sec: its URI, security mode, PSK identity and key.
func (b *Bootstrapped) Account(sec uint16) (uri string, mode int64, identity string, key []byte) {
	p := format.NewPath(0, sec)
	return b.Values[p.Child(0)].Str(), b.Values[p.Child(2)].Int(), string(b.Values[p.Child(3)].Bytes()),
		b.Values[p.Child(5)].Bytes()
}

// Bootstrap performs a client-initiated bootstrap (LwM2M 1.1 core
// 5.2.7.1) over NoSec: it sends Bootstrap-Request (POST /bs?ep=endpoint)
// to server, answers the server's Bootstrap-Delete and Bootstrap-Write
// (TLV, plain text or opaque) from an empty tree, and returns once the
// server sent Bootstrap-Finish, or when ctx ends. query is added to the
// request's (e.g. "pct=110", LwM2M 1.1's preferred content format).
func Bootstrap(ctx context.Context, server, endpoint string, query ...string) (*Bootstrapped, error) {
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return nil, err
	}
	conn, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return bootstrapOver(ctx, conn, endpoint, query)
}

// BootstrapPSK is Bootstrap over DTLS-PSK (TLS_PSK_WITH_AES_128_CCM_8,
// as tinydtls offers) with the bootstrap credential identity and key.
func BootstrapPSK(ctx context.Context, server, endpoint, identity string, key []byte, query ...string) (*Bootstrapped, error) {
	raddr, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		return nil, err
	}
	udp, err := net.DialUDP("udp", nil, raddr)
	if err != nil {
		return nil, err
	}
	defer udp.Close()
	conn, err := dtls.ClientWithContext(ctx, dtlsnet.PacketConnFromConn(udp), raddr, &dtls.Config{
		PSK:                  func([]byte) ([]byte, error) { return key, nil },
		PSKIdentityHint:      []byte(identity),
		CipherSuites:         []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		ExtendedMasterSecret: dtls.RequestExtendedMasterSecret,
	})
	if err != nil {
		return nil, fmt.Errorf("dtls handshake: %w", err)
	}
	defer conn.Close()
	return bootstrapOver(ctx, conn, endpoint, query)
}

// bootstrapOver runs the client's side of a bootstrap on conn.
func bootstrapOver(ctx context.Context, conn net.Conn, endpoint string, query []string) (*Bootstrapped, error) {
	send := func(m message.Message) error {
		buf, err := EncodeMessage(m)
		if err != nil {
			return err
		}
		_, err = conn.Write(buf)
		return err
	}
	var mid [2]byte
	_, _ = rand.Read(mid[:])
	tok := make([]byte, 8)
	_, _ = rand.Read(tok)
	req := message.Message{Token: tok, Code: codes.POST, Type: message.Confirmable,
		MessageID: int32(mid[0])<<8 | int32(mid[1])}
	req.Options = req.Options.Add(message.Option{ID: message.URIPath, Value: []byte("bs")})
	for _, q := range append([]string{"ep=" + endpoint}, query...) {
		req.Options = req.Options.Add(message.Option{ID: message.URIQuery, Value: []byte(q)})
	}

	b := &Bootstrapped{Values: map[format.Path]format.Value{}}
	answered := map[int32]message.Message{} // the server's requests, for its retransmissions
	acked := false
	buf := make([]byte, 64<<10)
	wait := time.Second
	for next := time.Now(); ; {
		if !acked && !time.Now().Before(next) {
			if err := send(req); err != nil {
				return nil, err
			}
			next, wait = time.Now().Add(wait), wait*2
		}
		// Wake for the next retransmission, or now and then to see ctx.
		deadline := next
		if acked {
			deadline = time.Now().Add(100 * time.Millisecond)
		}
		_ = conn.SetReadDeadline(deadline)
		n, err := conn.Read(buf)
		if ctx.Err() != nil {
			return b, fmt.Errorf("bootstrap: %w (after %v)", ctx.Err(), b.Ops)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			continue
		}
		if err != nil {
			return nil, err
		}
		// A fresh options slice each time: requests are kept (answered).
		m := message.Message{Options: make(message.Options, 0, maxOptions)}
		if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
			continue
		}
		if m.Code >= codes.Created || m.Code == codes.Empty {
			// A response: ours is the Bootstrap-Request's.
			if string(m.Token) == string(tok) {
				if m.Code != codes.Changed {
					return nil, &CodeError{Code: m.Code, Diagnostic: string(m.Payload)}
				}
				acked = true
			}
			continue
		}
		if prev, ok := answered[m.MessageID]; ok {
			_ = send(prev)
			continue
		}
		resp, finished := b.serve(m)
		answered[m.MessageID] = resp
		if err := send(resp); err != nil {
			return nil, err
		}
		if finished {
			return b, nil
		}
	}
}

// serve answers one bootstrap-server request.
func (b *Bootstrapped) serve(m message.Message) (message.Message, bool) {
	path, _ := m.Options.Path()
	path = "/" + strings.Trim(path, "/")
	b.Ops = append(b.Ops, m.Code.String()+" "+path)
	resp := message.Message{Token: append([]byte(nil), m.Token...), Type: message.Acknowledgement, MessageID: m.MessageID}
	if m.Type != message.Confirmable {
		resp.Type = message.NonConfirmable
	}
	if m.Code == codes.POST && path == "/bs" {
		resp.Code = codes.Changed
		return resp, true
	}
	p, err := format.ParsePath(path)
	if err != nil {
		resp.Code = codes.BadRequest
		return resp, false
	}
	switch m.Code {
	case codes.DELETE:
		for k := range b.Values {
			if p.Contains(k) {
				delete(b.Values, k)
			}
		}
		resp.Code = codes.Deleted
	case codes.PUT:
		ct, err := m.Options.ContentFormat()
		if err != nil {
			resp.Code = codes.BadRequest
			break
		}
		b.Formats = append(b.Formats, uint16(ct))
		recs, err := format.Decode(uint16(ct), p, m.Payload, format.DefaultModel())
		if err != nil {
			resp.Code = codes.BadRequest
			break
		}
		for _, r := range recs {
			b.Values[r.Path] = r.Value
		}
		resp.Code = codes.Changed
	default:
		resp.Code = codes.MethodNotAllowed
	}
	return resp, false
}
