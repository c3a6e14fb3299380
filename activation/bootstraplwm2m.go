package activation

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"

	"github.com/iotgate/iotgate/lwm2m/format"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/regions"
)

// LwM2MCentre is what the LwM2M bootstrap server needs of the domain
// (regions.Centre).
type LwM2MCentre interface {
	LwM2MBootstrap(ctx context.Context, src netip.Addr, endpoint string) (regions.LwM2MAccount, regions.Endpoint, error)
	// LwM2MCredential is the device a PSK identity names, with its
	// secret (the DTLS listener's bootstrap credential); it assigns
	// nothing.
	LwM2MCredential(ctx context.Context, identity string) (regions.LwM2MAccount, error)
}

// Security modes of the Security object's resource 2 (LwM2M 1.1
// E.1).
const (
	securityModePSK   = 0
	securityModeNoSec = 3
)

// The instances the bootstrap writes: /0/0 is, by convention (Wakaama,
// Leshan), the device's bootstrap-server account, which Bootstrap-Delete
// of /0 keeps; the region's server account goes beside it.
const (
	securityInstance = 1
	serverInstance   = 0
	// ShortServerID is the region server's short id (/0/1/10, /1/0/0).
	ShortServerID = 1
)

// maxBootstrapDatagram bounds a datagram the bootstrap server reads.
const maxBootstrapDatagram = 2 << 10

// DefaultBootstrapLifetime is the registration lifetime written into
// /1/0/1 when BootstrapLwM2MOptions.Lifetime is zero.
const DefaultBootstrapLifetime = 24 * time.Hour

// BootstrapLwM2MOptions configures NewBootstrapLwM2M.
type BootstrapLwM2MOptions struct {
	Centre LwM2MCentre
	// Listen is the UDP address of the NoSec listener (CoAP); empty:
	// none. It writes only NoSec accounts: a PSK is written over DTLS
	// only.
	Listen string
	// DTLSListen is the UDP address of the DTLS-PSK listener (CoAPs),
	// where a device proves itself with its bootstrap credential (PSK
	// identity = its endpoint name, key = registry.PSK of its secret, as
	// at its region); empty: none.
	DTLSListen string
	// HandshakeTimeout bounds one DTLS handshake (0: 10 s), and
	// MaxHandshakes how many run at once (0: 64).
	HandshakeTimeout time.Duration
	MaxHandshakes    int
	// Lifetime is the registration lifetime written for the region's
	// server; 0: DefaultBootstrapLifetime.
	Lifetime time.Duration
	// Timeout bounds one bootstrap (the centre's look-up and every
	// request to the device); 0: 30 s.
	Timeout time.Duration
	// Guard nil: no bans.
	Guard  Guard
	Logger *slog.Logger
}

// BootstrapLwM2M is the centre's LwM2M Bootstrap server (LwM2M 1.1
// transport 6.1, core 5.2.7), over NoSec and DTLS-PSK (see
// bootstraplwm2mdtls.go): a device sends Bootstrap-Request
// (POST /bs?ep={endpoint}); the server answers 2.04 and then, as the
// server, deletes the device's Security (/0) and Server (/1) objects but
// its bootstrap account, writes /0/1 (its region's LwM2M server URI,
// Bootstrap-Server false, security mode PSK with identity = node id and
// key = the device's secret, over DTLS only; or NoSec for a device that
// may register without DTLS) and
// /1/0 (short server id, lifetime, binding U) in TLV (or the client's
// preferred content format, pct), and ends with
// Bootstrap-Finish (POST /bs). The device's region, and its secret, come
// from the centre (regions.Centre.LwM2MBootstrap), which asks the region
// holding the device.
type BootstrapLwM2M struct {
	o   BootstrapLwM2MOptions
	l   *coapNet.UDPConn // nil without Listen
	srv *udpServer.Server
	// dtls is nil without DTLSListen.
	dtls *bootstrapDTLS

	mu       sync.Mutex
	inFlight map[string]*bootstrapSession // by endpoint
}

// bootstrapSession is one device's bootstrap under way.
type bootstrapSession struct {
	token  string // of its Bootstrap-Request
	cancel context.CancelFunc
}

// NewBootstrapLwM2M binds the listener; Start serves it.
func NewBootstrapLwM2M(o BootstrapLwM2MOptions) (*BootstrapLwM2M, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Lifetime <= 0 {
		o.Lifetime = DefaultBootstrapLifetime
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.Listen == "" && o.DTLSListen == "" {
		return nil, errors.New("lwm2m bootstrap: no listen address")
	}
	b := &BootstrapLwM2M{o: o, inFlight: map[string]*bootstrapSession{}}
	if o.Listen != "" {
		l, err := coapNet.NewListenUDP("udp", o.Listen)
		if err != nil {
			return nil, fmt.Errorf("lwm2m bootstrap listen %s: %w", o.Listen, err)
		}
		r := mux.NewRouter()
		if err := r.Handle("/bs", mux.HandlerFunc(b.request)); err != nil {
			_ = l.Close()
			return nil, err
		}
		log := o.Logger
		b.l = l
		b.srv = udp.NewServer(options.WithMux(r),
			// Malformed datagrams are the sender's business: debug, not stdout.
			options.WithErrors(func(err error) { log.Debug("lwm2m bootstrap: coap", "err", err) }),
			// A Bootstrap-Request and the device's answers are a few dozen
			// bytes.
			options.WithMaxMessageSize(maxBootstrapDatagram))
	}
	if o.DTLSListen != "" {
		d, err := b.listenDTLS()
		if err != nil {
			if b.l != nil {
				_ = b.l.Close()
			}
			return nil, err
		}
		b.dtls = d
	}
	return b, nil
}

// Addr is the NoSec listener's bound UDP address (nil without one).
func (b *BootstrapLwM2M) Addr() net.Addr {
	if b.l == nil {
		return nil
	}
	return b.l.LocalAddr()
}

// DTLSAddr is the DTLS listener's bound UDP address (nil without one).
func (b *BootstrapLwM2M) DTLSAddr() net.Addr {
	if b.dtls == nil {
		return nil
	}
	return b.dtls.l.Addr()
}

// Start serves in the background.
func (b *BootstrapLwM2M) Start(context.Context) error {
	if b.srv != nil {
		go func() {
			if err := b.srv.Serve(b.l); err != nil {
				b.o.Logger.Warn("lwm2m bootstrap server stopped", "err", err)
			}
		}()
	}
	if b.dtls != nil {
		go func() {
			if err := b.dtls.srv.Serve(b.dtls.l); err != nil {
				b.o.Logger.Warn("lwm2m bootstrap dtls server stopped", "err", err)
			}
		}()
	}
	return nil
}

// Shutdown stops the servers and closes the listeners.
func (b *BootstrapLwM2M) Shutdown(context.Context) error {
	if b.srv != nil {
		b.srv.Stop()
		_ = b.l.Close() // when Serve had not started yet
	}
	if b.dtls != nil {
		b.dtls.srv.Stop()
		_ = b.dtls.l.Close()
		b.dtls.cancel()
	}
	return nil
}

// bootstrapPlan is what one device is written.
type bootstrapPlan struct {
	endpoint string
	uri      string
	mode     int64
	identity string
	key      []byte
	lifetime int64
	// format is the content format of the writes.
	format uint16
}

// request serves a Bootstrap-Request on the NoSec listener.
func (b *BootstrapLwM2M) request(w mux.ResponseWriter, r *mux.Message) { b.serve(w, r, nil) }

// serve serves a Bootstrap-Request that came on the DTLS session peer
// (nil: on the NoSec listener).
func (b *BootstrapLwM2M) serve(w mux.ResponseWriter, r *mux.Message, peer *dtlsPeer) {
	if r.Code() != codes.POST {
		_ = w.SetResponse(codes.MethodNotAllowed, message.TextPlain, nil)
		return
	}
	src := netip.Addr{}
	if ua, ok := w.Conn().RemoteAddr().(*net.UDPAddr); ok {
		src, _ = netip.AddrFromSlice(ua.IP)
		src = src.Unmap()
	}
	ep := queryValue(r, "ep")
	if ep == "" {
		_ = w.SetResponse(codes.BadRequest, message.TextPlain, strings.NewReader("ep query parameter required"))
		return
	}
	if banned(b.o.Guard, ep, src) {
		_ = w.SetResponse(codes.Forbidden, message.TextPlain, nil)
		return
	}
	if b.underWay(ep, string(r.Token())) {
		// A retransmitted request: acknowledged again, its session goes on.
		if err := b.ack(context.Background(), w, r, peer); err != nil {
			b.o.Logger.Info("lwm2m bootstrap: answer not sent", "endpoint", ep, "err", err)
		}
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.o.Timeout)
	a, rep, err := b.o.Centre.LwM2MBootstrap(ctx, src, ep)
	if err == nil && peer != nil {
		err = b.sameDevice(ctx, peer.identity, ep, a)
	}
	countFailure(b.o.Guard, err, ep, src)
	var plan bootstrapPlan
	if err == nil {
		plan, err = b.plan(ep, a, rep, peer != nil)
		plan.format = writeFormat(queryValue(r, "pct"))
	}
	if err != nil {
		cancel()
		b.refuse(w, ep, src, err)
		return
	}
	sess := b.claim(ep, string(r.Token()), cancel)
	if err := b.ack(ctx, w, r, peer); err != nil {
		b.release(ep, sess)
		b.o.Logger.Info("lwm2m bootstrap: answer not sent", "endpoint", ep, "err", err)
		return
	}
	go func() {
		defer b.release(ep, sess)
		if peer != nil {
			defer peer.busy()()
		}
		if err := b.run(ctx, w.Conn(), plan); err != nil {
			b.o.Logger.Info("lwm2m bootstrap failed", "endpoint", ep, "addr", src.String(), "err", err)
			return
		}
		b.o.Logger.Info("device bootstrapped over LwM2M", "endpoint", ep, "device_id", a.DeviceID,
			"server", plan.uri, "psk", plan.mode == securityModePSK, "dtls", peer != nil)
	}()
}

// plan decides what the device is written: over DTLS, PSK towards the
// region's coaps URI when the device has a secret and the region serves
// DTLS; else NoSec towards its coap URI unless the device requires
// secure access. A PSK is never written over NoSec, where anyone who
// knows a device's endpoint name would read its key.
func (b *BootstrapLwM2M) plan(ep string, a regions.LwM2MAccount, rep regions.Endpoint, secure bool) (bootstrapPlan, error) {
	p := bootstrapPlan{endpoint: ep, lifetime: int64(b.o.Lifetime / time.Second)}
	switch {
	case secure && a.Secret != "" && rep.LwM2MSecureURI != "":
		p.uri, p.mode, p.identity, p.key = rep.LwM2MSecureURI, securityModePSK, a.DeviceName, registry.PSK(a.Secret)
	case !a.SecureAccess && rep.LwM2MURI != "":
		p.uri, p.mode = rep.LwM2MURI, securityModeNoSec
	case !secure && a.Secret != "" && rep.LwM2MSecureURI != "":
		return p, errNeedsDTLS
	default:
		return p, errNoLwM2MServer
	}
	return p, nil
}

// errNeedsDTLS: the device may register only with its PSK, which is
// written over DTLS only.
var errNeedsDTLS = errors.New("the device's PSK account is written over DTLS only")

// errNoLwM2MServer: the device's region serves no LwM2M server the
// device may use (a configuration gap, not the device's fault).
var errNoLwM2MServer = errors.New("the region has no LwM2M server URI for this device's security mode")

func (b *BootstrapLwM2M) refuse(w mux.ResponseWriter, ep string, src netip.Addr, err error) {
	var pe *regions.ParamError
	code, level := codes.Forbidden, slog.LevelInfo
	switch {
	case errors.As(err, &pe):
		code = codes.BadRequest
	case errors.Is(err, regions.ErrUnknownDevice), errors.Is(err, regions.ErrAuthType),
		errors.Is(err, errNeedsDTLS), errors.Is(err, errIdentityMismatch):
	default:
		// A region that did not answer, or no server to send the device
		// to: the device retries later.
		code, level = codes.ServiceUnavailable, slog.LevelWarn
	}
	b.o.Logger.Log(context.Background(), level, "lwm2m bootstrap refused", "endpoint", ep, "addr", src.String(),
		"code", code.String(), "err", err)
	_ = w.SetResponse(code, message.TextPlain, nil)
}

// underWay reports whether the request with token already started
// ep's bootstrap (a retransmission).
func (b *BootstrapLwM2M) underWay(ep, token string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	cur := b.inFlight[ep]
	return cur != nil && cur.token == token
}

// claim records the bootstrap of ep started by the request with token;
// a session under way for another request is the device starting over,
// and is cancelled.
func (b *BootstrapLwM2M) claim(ep, token string, cancel context.CancelFunc) *bootstrapSession {
	b.mu.Lock()
	defer b.mu.Unlock()
	if cur := b.inFlight[ep]; cur != nil {
		cur.cancel()
	}
	s := &bootstrapSession{token: token, cancel: cancel}
	b.inFlight[ep] = s
	return s
}

// release ends session s of ep.
func (b *BootstrapLwM2M) release(ep string, s *bootstrapSession) {
	s.cancel()
	b.mu.Lock()
	if b.inFlight[ep] == s {
		delete(b.inFlight, ep)
	}
	b.mu.Unlock()
}

// ack writes the request's 2.04 Changed at once, on the listener itself
// (or the DTLS session): go-coap's connection sends every message it is
// given as a request.
func (b *BootstrapLwM2M) ack(ctx context.Context, w mux.ResponseWriter, r *mux.Message, peer *dtlsPeer) error {
	m := message.Message{Code: codes.Changed, Token: r.Token(), Type: message.Acknowledgement, MessageID: r.MessageID()}
	if r.Type() != message.Confirmable {
		m.Type, m.MessageID = message.NonConfirmable, message.GetMID()
	}
	buf := make([]byte, 64)
	n, err := coder.DefaultCoder.Encode(m, buf)
	if err != nil {
		return err
	}
	if peer != nil {
		return peer.write(buf[:n])
	}
	ua, ok := w.Conn().RemoteAddr().(*net.UDPAddr)
	if !ok {
		return fmt.Errorf("peer %v is not UDP", w.Conn().RemoteAddr())
	}
	return b.l.WriteWithContext(ctx, ua, buf[:n])
}

// writeFormat is the content format of the Bootstrap-Writes: the
// client's preferred one (LwM2M 1.1 "pct", e.g. Wakaama's 110 when it is
// built without TLV) when it is an object format we encode, else TLV,
// which every LwM2M 1.0 client reads.
func writeFormat(pct string) uint16 {
	switch pct {
	case "110":
		return format.FormatSenMLJSON
	case "112":
		return format.FormatSenMLCBOR
	case "11543":
		return format.FormatLwM2MJSON
	}
	return format.FormatTLV
}

func queryValue(r *mux.Message, name string) string {
	qs, _ := r.Options().Queries()
	for _, q := range qs {
		if v, ok := strings.CutPrefix(q, name+"="); ok {
			return v
		}
	}
	return ""
}

// run performs the server's side of the bootstrap: deletes, writes,
// finish. A step the device refuses ends it (the device bootstraps
// again after its own timeout).
func (b *BootstrapLwM2M) run(ctx context.Context, cc mux.Conn, p bootstrapPlan) error {
	for _, path := range []string{"/0", "/1"} {
		resp, err := cc.Delete(ctx, path)
		if err != nil {
			return fmt.Errorf("bootstrap-delete %s: %w", path, err)
		}
		// 4.04: nothing to delete, which is fine.
		if c := resp.Code(); c != codes.Deleted && c != codes.NotFound {
			return fmt.Errorf("bootstrap-delete %s: %v", path, c)
		}
	}
	sec := format.NewPath(0, securityInstance)
	security := []format.Record{
		{Path: sec.Child(0), Value: format.StringValue(p.uri)},
		{Path: sec.Child(1), Value: format.BooleanValue(false)},
		{Path: sec.Child(2), Value: format.IntegerValue(p.mode)},
		{Path: sec.Child(3), Value: format.OpaqueValue([]byte(p.identity))},
		{Path: sec.Child(4), Value: format.OpaqueValue(nil)},
		{Path: sec.Child(5), Value: format.OpaqueValue(p.key)},
		{Path: sec.Child(10), Value: format.IntegerValue(ShortServerID)},
	}
	srv := format.NewPath(1, serverInstance)
	server := []format.Record{
		{Path: srv.Child(0), Value: format.IntegerValue(ShortServerID)},
		{Path: srv.Child(1), Value: format.IntegerValue(p.lifetime)},
		{Path: srv.Child(6), Value: format.BooleanValue(false)},
		{Path: srv.Child(7), Value: format.StringValue("U")},
	}
	for _, wr := range []struct {
		path format.Path
		recs []format.Record
	}{{sec, security}, {srv, server}} {
		payload, err := format.Encode(p.format, wr.path, wr.recs)
		if err != nil {
			return fmt.Errorf("encode %s: %w", wr.path, err)
		}
		resp, err := cc.Put(ctx, wr.path.String(), message.MediaType(p.format), bytes.NewReader(payload))
		if err != nil {
			return fmt.Errorf("bootstrap-write %s: %w", wr.path, err)
		}
		if resp.Code() != codes.Changed {
			return fmt.Errorf("bootstrap-write %s: %v", wr.path, resp.Code())
		}
	}
	resp, err := cc.Post(ctx, "/bs", message.TextPlain, nil)
	if err != nil {
		return fmt.Errorf("bootstrap-finish: %w", err)
	}
	if resp.Code() != codes.Changed {
		return fmt.Errorf("bootstrap-finish: %v", resp.Code())
	}
	return nil
}
