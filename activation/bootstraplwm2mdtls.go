package activation

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/pion/dtls/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/monitor/inactivity"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"

	"github.com/iotgate/iotgate/lwm2m/ratelog"
	"github.com/iotgate/iotgate/lwm2m/transport"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/regions"
)

// The DTLS listener of the LwM2M Bootstrap server. A device proves
// itself with its bootstrap credential: PSK identity = its endpoint name
// (as at its region's LwM2M server), key = registry.PSK of its secret.
// The centre holds no secret: the key comes, during the handshake, from
// the region holding the device (regions.Centre.LwM2MCredential), and
// lives in memory for the handshake only. The Bootstrap-Request on the
// session must name the device the identity names; the account written
// to it (PSK identity and key for its region) then travels encrypted.
//
// The sessions run on the LwM2M adapter's transport (lwm2m/transport,
// which knows nothing of LwM2M): its mux, bounded handshakes with
// cookies and bans, and its sweep, which retransmits our requests to
// the device every tick while a bootstrap runs on the session.

// Defaults of BootstrapLwM2MOptions.
const (
	defaultBootstrapHandshakeTimeout = 10 * time.Second
	defaultBootstrapMaxHandshakes    = 64
	// bootstrapSessionIdle is how long a DTLS session with no bootstrap
	// under way is kept: a device that bootstrapped goes to its region.
	bootstrapSessionIdle = 30 * time.Second
)

// bootstrapCipherSuites are the PSK suites the LwM2M server offers
// (tinydtls offers CCM_8).
var bootstrapCipherSuites = []dtls.CipherSuiteID{
	dtls.TLS_PSK_WITH_AES_128_CCM_8,
	dtls.TLS_PSK_WITH_AES_128_CBC_SHA256,
	dtls.TLS_PSK_WITH_AES_128_CCM,
	dtls.TLS_PSK_WITH_AES_128_GCM_SHA256,
}

// errIdentityMismatch: the Bootstrap-Request names another device than
// the session's PSK identity.
var errIdentityMismatch = errors.New("the endpoint names another device than the DTLS PSK identity")

// errBannedIdentity fails the handshake of a banned PSK identity.
var errBannedIdentity = errors.New("psk identity is banned")

// bootstrapDTLS is the DTLS listener and its CoAP server.
type bootstrapDTLS struct {
	l      *transport.DTLSListener
	srv    *transport.DTLSServer
	cancel context.CancelFunc

	mu      sync.Mutex
	running map[*udpClient.Conn]int // bootstraps under way, by session
}

// dtlsPeer is the DTLS session a Bootstrap-Request came on.
type dtlsPeer struct {
	d        *bootstrapDTLS
	cc       *udpClient.Conn
	identity string
}

// write sends b on the session as it is.
func (p *dtlsPeer) write(b []byte) error {
	_, err := p.cc.NetConn().Write(b)
	return err
}

// busy marks the session as running a bootstrap, so the sweep checks it
// every tick (our requests' retransmissions) and the idle monitor keeps
// it; the returned func ends that.
func (p *dtlsPeer) busy() func() {
	p.d.mu.Lock()
	p.d.running[p.cc]++
	p.d.mu.Unlock()
	p.d.srv.RequestStarted(p.cc)
	return func() {
		p.d.mu.Lock()
		if p.d.running[p.cc]--; p.d.running[p.cc] <= 0 {
			delete(p.d.running, p.cc)
		}
		p.d.mu.Unlock()
	}
}

func (d *bootstrapDTLS) isBusy(cc *udpClient.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.running[cc] > 0
}

// listenDTLS binds DTLSListen.
func (b *BootstrapLwM2M) listenDTLS() (*bootstrapDTLS, error) {
	o := b.o
	if o.HandshakeTimeout <= 0 {
		o.HandshakeTimeout = defaultBootstrapHandshakeTimeout
	}
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = defaultBootstrapMaxHandshakes
	}
	log := o.Logger
	g := o.Guard
	ctx, cancel := context.WithCancel(context.Background())
	d := &bootstrapDTLS{cancel: cancel, running: map[*udpClient.Conn]int{}}
	cfg := &dtls.Config{
		PSK: func(identity []byte) ([]byte, error) {
			hctx, cancel := context.WithTimeout(ctx, o.HandshakeTimeout)
			defer cancel()
			return b.bootstrapKey(hctx, string(identity))
		},
		// pion runs PSK key exchange with clients that send no hint only
		// when the server names one; LwM2M clients ignore it.
		PSKIdentityHint:      []byte("iotgate"),
		CipherSuites:         bootstrapCipherSuites,
		ExtendedMasterSecret: dtls.RequestExtendedMasterSecret,
		ConnectContextMaker: func() (context.Context, func()) {
			return context.WithTimeout(ctx, o.HandshakeTimeout)
		},
		LoggerFactory: transport.NewPionLogger(log),
	}
	lim := transport.DTLSLimits{MaxHandshakes: o.MaxHandshakes}
	if g != nil {
		lim.Admit = func(a netip.Addr) bool { return !g.AddressBanned(a) }
		// A failed handshake counts against its identity only: it may be
		// the network's doing, and NB-IoT devices share their carrier's
		// few addresses (as at the LwM2M server).
		lim.Failed = func(identity string, _ netip.Addr) {
			if identity != "" {
				g.AuthFailed(identity, netip.Addr{})
			}
		}
	}
	l, err := transport.ListenDTLS(o.DTLSListen, cfg, lim, ratelog.New(log, 0, 0, nil), log)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("lwm2m bootstrap: %w", err)
	}
	d.l = l
	r := mux.NewRouter()
	if err := r.Handle("/bs", mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		cc, ok := w.Conn().(*udpClient.Conn)
		if !ok {
			return
		}
		dc, ok := cc.NetConn().(*dtls.Conn)
		if !ok {
			return
		}
		b.serve(w, req, &dtlsPeer{d: d, cc: cc, identity: string(dc.ConnectionState().IdentityHint)})
	})); err != nil {
		_ = l.Close()
		cancel()
		return nil, err
	}
	sc := udpServer.DefaultConfig
	sc.Ctx = ctx
	sc.Errors = func(err error) { log.Debug("lwm2m bootstrap: coaps", "err", err) }
	sc.PeriodicRunner = transport.EveryTick
	sc.MaxMessageSize = maxBootstrapDatagram
	sc.Handler = mux.ToHandler[*udpClient.Conn](r)
	sc.GetToken = message.GetToken
	sc.MessagePool = pool.New(0, 0)
	sc.CreateInactivityMonitor = func() udpClient.InactivityMonitor {
		return inactivity.New(bootstrapSessionIdle, func(cc *udpClient.Conn) {
			if !d.isBusy(cc) {
				_ = cc.Close()
			}
		})
	}
	d.srv = transport.NewDTLSServer(sc, transport.Sweep{Idle: bootstrapSessionIdle, Busy: d.isBusy})
	return d, nil
}

// bootstrapKey answers pion's PSK callback: the key of the device the
// identity names. An unknown identity, or a device with no secret, gets
// a random key instead of an error, so that it fails at the same step
// of the handshake as a wrong key and a scanner cannot tell which names
// exist.
func (b *BootstrapLwM2M) bootstrapKey(ctx context.Context, identity string) ([]byte, error) {
	if g := b.o.Guard; g != nil && g.IdentityBanned(identity) {
		return nil, errBannedIdentity
	}
	a, err := b.o.Centre.LwM2MCredential(ctx, identity)
	var pe *regions.ParamError
	if err != nil && !errors.Is(err, regions.ErrUnknownDevice) && !errors.As(err, &pe) {
		b.o.Logger.Warn("lwm2m bootstrap: psk lookup failed", "identity", identity, "err", err)
		return nil, err
	}
	if err != nil || a.Secret == "" {
		k := make([]byte, 16)
		_, _ = rand.Read(k)
		return k, nil
	}
	return registry.PSK(a.Secret), nil
}

// sameDevice checks that the Bootstrap-Request's endpoint ep, whose
// account is a, names the device the session's PSK identity names (an
// IMEI may be given with or without its urn:imei: prefix).
func (b *BootstrapLwM2M) sameDevice(ctx context.Context, identity, ep string, a regions.LwM2MAccount) error {
	if identity == ep {
		return nil
	}
	id, err := b.o.Centre.LwM2MCredential(ctx, identity)
	if err != nil {
		return fmt.Errorf("psk identity %q: %w", identity, err)
	}
	if id.DeviceID != a.DeviceID {
		if g := b.o.Guard; g != nil {
			g.AuthFailed(identity, netip.Addr{})
		}
		return errIdentityMismatch
	}
	return nil
}
