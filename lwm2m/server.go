package lwm2m

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/lwm2m/ratelog"
	"github.com/iotgate/iotgate/lwm2m/transport"
	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
	coapNet "github.com/plgd-dev/go-coap/v3/net"
)

// Registry is what the server needs of iotgate's registry; a
// *registry.Registry satisfies it.
type Registry interface {
	NodeFinder
	Connected(ctx context.Context, id string) (registry.Session, error)
	Disconnected(id string, s registry.Session) (superseded bool)
	AddMessage(ctx context.Context, deviceID string, m registry.Message) error
	ReportMessageAndProperties(ctx context.Context, deviceID string, m registry.Message, reports []registry.ServiceProperties) error
	PendingAsyncCommands(ctx context.Context, deviceID string, limit int) ([]*registry.AsyncCommand, error)
	StartAsyncCommand(ctx context.Context, commandID string, answerWithin time.Duration) (*registry.AsyncCommand, error)
	FinishAsyncCommand(ctx context.Context, commandID string, status registry.AsyncStatus, result json.RawMessage) error
}

// Defaults of Options.
const (
	DefaultLifetime         = 86400 * time.Second // LwM2M's default lt
	DefaultMinLifetime      = 10 * time.Second
	DefaultMaxLifetime      = 30 * 24 * time.Hour
	DefaultQueueWindow      = 93 * time.Second // CoAP MAX_TRANSMIT_WAIT, as LwM2M 1.1 §6.4
	DefaultRequestTimeout   = 60 * time.Second
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultMaxHandshakes    = 1024
	DefaultMaxUnverified    = 128
	DefaultCookieWait       = 3 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultNoSecIdleTimeout = 5 * time.Second
	DefaultSweepInterval    = time.Second
	DefaultAckTimeout       = 2 * time.Second // RFC 7252 §4.8
)

// workerIdle is how long a pooled worker waits for its next job.
const workerIdle = 10 * time.Second

// Options configures a Server. Zero durations and counts take the
// defaults above.
type Options struct {
	Registry Registry
	// Security resolves endpoint names and PSK identities; nil means the
	// registry's node index (RegistrySecurity).
	Security SecurityStore
	// Listen is the CoAP (NoSec) UDP address, DTLSListen the CoAP over
	// DTLS one; empty disables that listener.
	Listen, DTLSListen string
	Logger             *slog.Logger
	// MinLifetime and MaxLifetime bound the lifetime a client may ask for
	// (lt); outside them Register and Update get 4.00.
	MinLifetime, MaxLifetime time.Duration
	// QueueWindow is how long a queue-mode client stays reachable after
	// it last sent something; downlink work waits for its next uplink.
	QueueWindow time.Duration
	// RequestTimeout bounds one request to a client, retransmissions
	// included.
	RequestTimeout time.Duration
	// HandshakeTimeout bounds one DTLS handshake; MaxHandshakes how many
	// run at once.
	HandshakeTimeout time.Duration
	MaxHandshakes    int
	// MaxUnverified bounds the handshakes waiting for their client to
	// echo the cookie of the HelloVerifyRequest (a client that sends
	// ClientHellos from a spoofed address never does): one more ends the
	// oldest. CookieWait is how long one may wait.
	MaxUnverified int
	CookieWait    time.Duration
	// IdleTimeout closes a DTLS session that carries no registration and
	// has been silent this long.
	IdleTimeout time.Duration
	// NoSecIdleTimeout closes go-coap's connection to a NoSec client's
	// address once it has been silent this long, with nothing in flight.
	// The registration stays; the next datagram or request to the address
	// makes a new connection.
	NoSecIdleTimeout time.Duration
	// SweepInterval is how often expired registrations are removed.
	SweepInterval time.Duration
	// AckTimeout is CoAP's ACK_TIMEOUT for the requests the server sends
	// on its own (the Observe after a registration): the first wait for
	// an answer, 1 to 1.5 times this, doubled at each of the 4
	// retransmissions.
	AckTimeout time.Duration
	// LogPerSecond and LogBurst bound the info lines of refused
	// Registers and failed DTLS handshakes (a token bucket: LogBurst
	// lines at once, LogPerSecond a second on average); the lines over
	// it are counted, and the next line written says how many.
	LogPerSecond float64
	LogBurst     int
	// Guard holds the abuse controls shared with the other listeners:
	// a banned address starts no DTLS handshake and is refused a NoSec
	// Register before any lookup, a banned endpoint or PSK identity is
	// refused before its credentials are read, and refused Registers and
	// failed handshakes count towards bans. Nil: a node-local guard with
	// the defaults.
	Guard guard.Guard
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Node names this node of a cluster ("" on a single node): the DTLS
	// Connection IDs it hands out then carry its tag (transport.TagOf).
	Node string
	// ForwardListen, on a node of a cluster, is the UDP address of its
	// DTLS forward listener (cluster.advertise.coap_forward): a node that
	// receives a record whose Connection ID this node issued forwards the
	// datagram there (transport.Forwarder). Nodes lists the nodes and
	// their forward addresses. Empty: records for other nodes' CIDs are
	// dropped.
	ForwardListen string
	Nodes         NodeLister
	// OnHandshake, when set, is told of each DTLS handshake's end: its
	// result (transport.HandshakeOK, HandshakeFailed, HandshakeAbandoned)
	// and how long it took (the platform's metrics). It must not block.
	OnHandshake func(result string, took time.Duration)
	// Sessions stores the registrations (persist.go): they survive a
	// restart, and on a cluster (Node set) an Update or De-register of a
	// registration another node holds is served here. Nil: registrations
	// live in memory only, and end with the server.
	Sessions SessionStore
	// SaveInterval is how often changed registrations are written to
	// Sessions; a kill -9 loses the changes of at most this long.
	SaveInterval time.Duration
	// Firmware configures firmware delivery (object 5, firmware.go).
	Firmware FirmwareOptions
}

// Server is the LwM2M server. It implements the listener interface of
// cmd/iotgate (Start, Shutdown), registry.Kicker and
// registry.AsyncCommandDispatcher.
type Server struct {
	o   Options
	reg Registry
	sec SecurityStore
	log *slog.Logger
	// limited is the log under a budget, for lines a flood could
	// repeat (refusals, failed handshakes).
	limited *ratelog.Logger
	now     func() time.Time
	store   *regStore
	obs     *obsIndex
	peers   *peerIndex
	// links shares the parsed object links of identical payloads.
	links *linkSets
	// saved queues the registrations to write to Options.Sessions (nil
	// without one); saveMu makes its rounds one at a time.
	saved  *persister
	saveMu sync.Mutex
	work   *workers
	// fw delivers firmware upgrades (firmware.go).
	fw *firmware
	// conns counts go-coap's open connections (NoSec addresses and DTLS
	// sessions).
	conns atomic.Int64
	stats counters

	udp     *transport.UDPServer
	dtls    *transport.DTLSServer
	udpConn *coapNet.UDPConn
	dtlsLn  *transport.DTLSListener

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds a server; Start binds it.
func New(o Options) (*Server, error) {
	if o.Registry == nil {
		return nil, errors.New("lwm2m: no registry")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.MinLifetime, DefaultMinLifetime)
	def(&o.MaxLifetime, DefaultMaxLifetime)
	def(&o.QueueWindow, DefaultQueueWindow)
	def(&o.RequestTimeout, DefaultRequestTimeout)
	def(&o.HandshakeTimeout, DefaultHandshakeTimeout)
	def(&o.IdleTimeout, DefaultIdleTimeout)
	def(&o.NoSecIdleTimeout, DefaultNoSecIdleTimeout)
	def(&o.SweepInterval, DefaultSweepInterval)
	def(&o.AckTimeout, DefaultAckTimeout)
	def(&o.CookieWait, DefaultCookieWait)
	def(&o.SaveInterval, DefaultSaveInterval)
	if o.MaxHandshakes <= 0 {
		o.MaxHandshakes = DefaultMaxHandshakes
	}
	if o.MaxUnverified <= 0 {
		o.MaxUnverified = DefaultMaxUnverified
	}
	if o.MinLifetime > o.MaxLifetime {
		return nil, fmt.Errorf("lwm2m: min lifetime %v exceeds max lifetime %v", o.MinLifetime, o.MaxLifetime)
	}
	if err := ValidFirmwareHTTPURL(o.Firmware.HTTPURL); err != nil {
		return nil, fmt.Errorf("lwm2m: firmware http url: %w", err)
	}
	s := &Server{o: o, reg: o.Registry, sec: o.Security, log: o.Logger, now: o.Now,
		store: newRegStore(), obs: newObsIndex(), peers: newPeerIndex(), links: newLinkSets()}
	if s.sec == nil {
		s.sec = RegistrySecurity{Registry: o.Registry}
	}
	if o.Sessions != nil {
		s.saved = newPersister()
	}
	if s.o.Guard == nil {
		s.o.Guard = guard.NewLocal(guard.Defaults())
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.limited = ratelog.New(s.log, o.LogPerSecond, o.LogBurst, nil)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.work = newWorkers(workerIdle, s.ctx.Done())
	s.fw = newFirmware(s, o.Firmware)
	return s, nil
}

// Start binds the configured listeners and returns once they accept
// datagrams.
func (s *Server) Start(ctx context.Context) error {
	if s.o.Sessions != nil {
		n, err := s.restore(ctx)
		if err != nil {
			return fmt.Errorf("lwm2m: %w", err)
		}
		s.log.Info("lwm2m registrations restored", "count", n)
	}
	router := s.router()
	if s.o.Listen != "" {
		l, err := transport.ListenUDP(s.o.Listen)
		if err != nil {
			return fmt.Errorf("lwm2m: coap listen %s: %w", s.o.Listen, err)
		}
		udp, err := transport.NewUDPServer(s.serverConfig(router, false).goCoAP(), l, s.connSweep(s.o.NoSecIdleTimeout))
		if err != nil {
			_ = l.Close()
			return fmt.Errorf("lwm2m: coap listen %s: %w", s.o.Listen, err)
		}
		s.udpConn, s.udp = l, udp
		s.serve(s.udp.Serve)
		s.log.Info("lwm2m coap listening", "addr", l.LocalAddr().String())
	}
	if s.o.DTLSListen != "" {
		g := s.o.Guard
		fwd, miss, err := s.forwarder()
		if err != nil {
			s.stopListeners()
			return fmt.Errorf("lwm2m: %w", err)
		}
		l, err := transport.ListenDTLS(s.o.DTLSListen, dtlsConfig(s.sec, g, s.o.HandshakeTimeout, s.o.Node, s.log), transport.DTLSLimits{
			MaxHandshakes: s.o.MaxHandshakes, MaxUnverified: s.o.MaxUnverified, CookieWait: s.o.CookieWait,
			Admit: func(a netip.Addr) bool { return !g.AddressBanned(a) },
			// A failed handshake counts against its PSK identity only: it
			// may be the network's doing (a timeout, a lost flight), and
			// NB-IoT devices often share their carrier's few addresses.
			Failed: func(identity string, _ netip.Addr) {
				s.stats.authFailures[failedHandshake].Add(1)
				if identity != "" {
					g.AuthFailed(identity, netip.Addr{})
				}
			},
			Forward: fwd,
			Done:    s.o.OnHandshake,
		}, s.limited, s.log)
		if err != nil {
			s.stopListeners()
			return fmt.Errorf("lwm2m: %w", err)
		}
		s.dtlsLn = l
		s.dtls = transport.NewDTLSServer(s.serverConfig(router, true).goCoAP(), s.connSweep(s.o.IdleTimeout))
		s.serve(func() error { return s.dtls.Serve(l) })
		s.log.Info("lwm2m coaps (dtls) listening", "addr", l.Addr().String())
		if fwd != nil {
			s.wg.Add(1)
			go s.peersLoop(fwd, miss)
			s.log.Info("lwm2m dtls forward listening", "addr", fwd.Addr().String(), "node_tag", fmt.Sprintf("%04x", uint16(fwd.Tag())))
		}
	}
	s.wg.Add(2)
	go s.sweepLoop()
	go s.fw.sweepLoop()
	if s.saved != nil {
		s.wg.Add(1)
		go s.saveLoop()
	}
	return nil
}

func (s *Server) serve(fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil {
			s.log.Error("lwm2m listener stopped", "err", err)
		}
	}()
}

// UDPAddr is the bound CoAP address (nil when disabled or not started).
func (s *Server) UDPAddr() net.Addr {
	if s.udpConn == nil {
		return nil
	}
	return s.udpConn.LocalAddr()
}

// DTLSAddr is the bound CoAP-over-DTLS address.
func (s *Server) DTLSAddr() net.Addr {
	if s.dtlsLn == nil {
		return nil
	}
	return s.dtlsLn.Addr()
}

func (s *Server) stopListeners() {
	if s.udp != nil {
		s.udp.Stop()
	}
	if s.dtls != nil {
		s.dtls.Stop()
	}
}

// Shutdown stops the listeners and waits for the server's goroutines,
// bounded by ctx. Without a session store it drops every registration
// (its devices go offline). With one it writes the registrations' last
// changes and leaves them, and their devices' sessions, as they are: the
// next start restores them, and the devices see no restart.
func (s *Server) Shutdown(ctx context.Context) error {
	s.cancel()
	s.stopListeners()
	var serr error
	if s.saved != nil {
		serr = s.save(ctx)
	}
	for _, e := range s.store.all() {
		if !s.store.remove(e) {
			continue
		}
		if s.saved == nil {
			s.retire(e, "server shutdown", true)
			continue
		}
		s.forget(e)
		if c := e.conn.Load(); c != nil {
			_ = c.Close()
		}
	}
	if serr != nil {
		return fmt.Errorf("lwm2m: saving registrations at shutdown: %w", serr)
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// forget drops e's observations (the registration has ended, or the
// server stops).
func (s *Server) forget(e *entry) {
	e.mu.Lock()
	for tok, o := range e.observations {
		s.obs.remove(tok)
		o.settle()
	}
	clear(e.observations)
	e.mu.Unlock()
}

// Kick drops the device's registration (registry.Kicker): the device was
// frozen or deleted, or its secret reset. Its DTLS session is closed, so
// it must handshake again with its current key.
func (s *Server) Kick(deviceID, reason string) {
	e := s.store.device(deviceID)
	if e == nil || !s.store.remove(e) {
		return
	}
	s.end(e, reason, true, slog.LevelInfo) // the platform's doing: worth a line
}

// Registered counts the live registrations.
func (s *Server) Registered() int { return s.store.len() }

// Registration returns the device's current registration, if any.
func (s *Server) Registration(deviceID string) (*Registration, bool) {
	e := s.store.device(deviceID)
	if e == nil {
		return nil, false
	}
	return e.reg.Load(), true
}

// sweepLoop removes registrations whose lifetime ran out.
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(s.o.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
			s.sweep()
		}
	}
}

// sweep expires due registrations, in batches so the store's lock is never
// held long.
func (s *Server) sweep() int {
	n := 0
	for {
		due := s.store.expire(s.now(), 256)
		for _, e := range due {
			s.retire(e, "lifetime expired", true)
		}
		n += len(due)
		if len(due) < 256 {
			return n
		}
	}
}

// retire ends a registration that has left the store: the device goes
// offline (unless it registered again meanwhile), its observations are
// forgotten and, with closeConn, its DTLS session is closed. Logged at
// debug, as every session's start and end (see log_level).
func (s *Server) retire(e *entry, reason string, closeConn bool) {
	s.end(e, reason, closeConn, slog.LevelDebug)
}

// end is retire, logged at level.
func (s *Server) end(e *entry, reason string, closeConn bool, level slog.Level) {
	s.reg.Disconnected(e.deviceID, e.session)
	s.markGone(e)
	if a := e.addr.Load(); a != nil {
		s.peers.drop(addrPortOf(a), e)
	}
	s.forget(e)
	if c := e.conn.Load(); c != nil {
		if st := stateOf(c); st != nil {
			st.entry.CompareAndSwap(e, nil)
		}
		if closeConn {
			_ = c.Close()
		}
	}
	if s.log.Enabled(s.ctx, level) {
		r := e.reg.Load()
		s.log.Log(s.ctx, level, "lwm2m registration ended", "endpoint", r.Endpoint, "device_id", e.deviceID, "registration", e.id, "reason", reason)
	}
}
