package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/guard"
)

// Registry is what the MQTT front end needs from the device registry;
// *registry.Registry implements it.
type Registry interface {
	authRegistry
	statusRegistry
	uplinkRegistry
	gatewayRegistry
	hwGatewayRegistry
	readyRegistry
}

var _ Registry = (*registry.Registry)(nil)

// Options configures a Server.
type Options struct {
	Registry Registry
	// Listen is the plain MQTT address (IoTDA: port 1883); empty: none.
	Listen string
	// TLSListen is the MQTTS address (IoTDA: port 8883); empty: none.
	TLSListen string
	// TLS holds the server certificate for TLSListen. The server asks
	// clients for a certificate but does not require one.
	TLS *tls.Config
	// TimestampSkew is how far a sign_type 1 ClientId timestamp may be
	// from our clock; zero means one hour.
	TimestampSkew time.Duration
	// Guard holds the abuse controls (bans, failed-authentication and
	// flapping counters), consulted before any cryptography or store
	// lookup; nil: a node-local guard with guard.Defaults.
	Guard guard.Guard
	// Limits bound what clients can make the server hold or do.
	Limits Limits
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// IotTokens checks securemode=-1 CONNECTs (activation centre
	// tokens); nil refuses them.
	IotTokens IotTokenChecker
	// Descriptors, when set, wraps both listeners (see ListenerWrapper);
	// nil: connections are bounded by the caps of Limits alone.
	Descriptors ListenerWrapper
}

// Server is the MQTT and MQTTS front end: an embedded mochi broker with
// the hooks of this package. It implements registry.CommandSender,
// registry.PropertiesSender, registry.MessageSender, registry.Kicker and
// registry.SubDeviceNotifier.
type Server struct {
	broker   *mochi.Server
	reg      Registry
	conns    *conns
	log      *slog.Logger
	ctx      context.Context
	cancel   context.CancelFunc
	now      func() time.Time
	plain    *tcpListener
	secure   *tcpListener
	commands *pendingCommands
	acl      *aclHook
	uplink   *uplinkHook
	register *registrationHook
	auth     *authHook
	stats    *counters
	shutdown sync.Once
	stopped  chan struct{} // closed once Shutdown has finished
	// notifyIDs numbers the Alink requests the platform sends (their id):
	// bootstrap notifications, property sets, service calls.
	notifyIDs atomic.Int64
}

var (
	_ registry.CommandSender     = (*Server)(nil)
	_ registry.PropertiesSender  = (*Server)(nil)
	_ registry.MessageSender     = (*Server)(nil)
	_ registry.Kicker            = (*Server)(nil)
	_ registry.SubDeviceNotifier = (*Server)(nil)
)

// New builds the server; Start binds its listeners.
func New(o Options) (*Server, error) {
	if o.Registry == nil {
		return nil, errors.New("mqtt: no registry")
	}
	if o.Listen == "" && o.TLSListen == "" {
		return nil, errors.New("mqtt: no listen address")
	}
	if o.TLSListen != "" && (o.TLS == nil || len(o.TLS.Certificates) == 0 && o.TLS.GetCertificate == nil) {
		return nil, errors.New("mqtt: MQTTS needs a server certificate")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.TimestampSkew <= 0 {
		o.TimestampSkew = time.Hour
	}
	if o.Guard == nil {
		o.Guard = guard.NewLocal(guard.Defaults())
	}
	limits := o.Limits.withDefaults()
	log := o.Logger
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{reg: o.Registry, conns: &conns{}, log: log, ctx: ctx, cancel: cancel, now: o.Now,
		commands: newPendingCommands(), stopped: make(chan struct{}), stats: &counters{}}
	refusals := newRefusalLog(log, limits.RefusalLogRate, limits.RefusalLogBurst)
	admission := newAdmission(limits, o.Guard, refusals, s.stats)
	s.broker = mochi.New(&mochi.Options{
		Capabilities:            capabilities(),
		ClientNetReadBufferSize: ClientReadBufferSize,
		Logger:                  slog.New(demoted{log.Handler()}).With("component", "mochi"),
		// $SYS topics are of no use to devices, which may not read them.
		SysTopicResendInterval: math.MaxInt32,
	})

	s.acl = &aclHook{conns: s.conns, log: log}
	s.uplink = &uplinkHook{reg: o.Registry, conns: s.conns, responses: s.commands, log: log, ctx: ctx}
	s.register = &registrationHook{conns: s.conns, log: log, linger: registrationLinger}
	// Order matters where several hooks provide an event: limits
	// before auth (OnConnect), limits before gateway requests before
	// the uplinks (OnPublish; the first to answer CodeSuccessIgnore or
	// ErrRejectPacket ends the chain).
	s.auth = &authHook{reg: o.Registry, conns: s.conns, log: log, ctx: ctx, skew: o.TimestampSkew, now: o.Now,
		guard: o.Guard, limits: limits, logs: refusals, stats: s.stats, iotTokens: o.IotTokens}
	hooks := []mochi.Hook{
		&limitsHook{limits: limits, conns: s.conns, logs: refusals, stats: s.stats, log: log},
		s.auth,
		s.acl,
		&statusHook{reg: o.Registry, conns: s.conns, log: log, ctx: ctx},
		s.register,
		&gatewayHook{reg: o.Registry, conns: s.conns, log: log, ctx: ctx},
		&hwGatewayHook{reg: o.Registry, conns: s.conns, log: log, ctx: ctx, now: o.Now, rejected: &s.uplink.rejected},
		s.uplink,
		&readyHook{reg: o.Registry, conns: s.conns, ctx: ctx},
	}
	for _, h := range hooks {
		if err := s.broker.AddHook(h, nil); err != nil {
			return nil, fmt.Errorf("mqtt: add hook %s: %w", h.ID(), err)
		}
	}
	if o.Listen != "" {
		s.plain = newTCPListener("mqtt", o.Listen, nil, admission)
		s.plain.descriptors = o.Descriptors
	}
	if o.TLSListen != "" {
		tc := o.TLS.Clone()
		// Optional at the TLS level so secret devices connect too; the
		// certificate is verified by authHook against the device's
		// project CAs, which change at run time.
		tc.ClientAuth = tls.RequestClientCert
		s.secure = newTCPListener("mqtts", o.TLSListen, tc, admission)
		s.secure.descriptors = o.Descriptors
	}
	return s, nil
}

// capabilities are mochi's settings for IoTDA's MQTT (reference §4).
func capabilities() *mochi.Capabilities {
	c := mochi.NewDefaultServerCapabilities()
	c.MaximumQos = 1
	c.RetainAvailable = 0
	c.MaximumPacketSize = maxPacket
	// IoTDA keeps no session for an offline MQTT device.
	c.MaximumSessionExpiryInterval = 0
	// Shared subscriptions would let a device take another's messages;
	// the ACL refuses them anyway.
	c.SharedSubAvailable = 0
	// mochi checks a publish's ACL before resolving its topic alias.
	c.TopicAliasMaximum = 0
	c.MaximumClientWritesPending = ClientWritesPending
	return c
}

// What mochi allocates for every connection up front, sized for idle
// devices (the benchmark's baseline mochi is configured alike).
const (
	// ClientReadBufferSize is the connection's read buffer (mochi's
	// default: 2 KiB). A CONNECT, a PINGREQ or a property report fits
	// in it; a larger packet is read straight into its own slice
	// (mochi reads a packet's body with io.ReadFull, and bufio bypasses
	// its buffer for reads at least its size), so a 1 MiB publish costs
	// no extra copy.
	ClientReadBufferSize = 512
	// ClientWritesPending is the capacity of the connection's queue of
	// publishes mochi routes to it (8 bytes a slot; mochi's default,
	// 8,192, is 64 KiB). Nothing is routed to devices here: every uplink
	// hook answers CodeSuccessIgnore and downlinks are written directly
	// (deliver), so the queue only has to exist.
	ClientWritesPending = 8
)

// Start binds the listeners and returns once they accept connections.
func (s *Server) Start(ctx context.Context) error {
	for _, l := range []*tcpListener{s.plain, s.secure} {
		if l == nil {
			continue
		}
		if err := s.broker.AddListener(l); err != nil {
			return fmt.Errorf("mqtt: listen %s: %w", l.ID(), err)
		}
	}
	if err := s.broker.Serve(); err != nil {
		return fmt.Errorf("mqtt: serve: %w", err)
	}
	if s.plain != nil {
		s.log.Info("mqtt listening", "addr", s.plain.Address())
	}
	if s.secure != nil {
		s.log.Info("mqtts listening", "addr", s.secure.Address())
	}
	return nil
}

// Shutdown closes the listeners and every connection, and waits (bounded
// by ctx) until the sessions' ends have reached the registry. Later calls
// wait for the same shutdown.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdown.Do(func() {
		s.cancel()
		go func() {
			_ = CloseBroker(s.broker)
			s.broker.Listeners.ClientsWg.Wait()
			close(s.stopped)
		}()
	})
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqtt: shutdown: %w", ctx.Err())
	}
}

// Addr is the plain MQTT listener's address ("" if none).
func (s *Server) Addr() string {
	if s.plain == nil {
		return ""
	}
	return s.plain.Address()
}

// TLSAddr is the MQTTS listener's address ("" if none).
func (s *Server) TLSAddr() string {
	if s.secure == nil {
		return ""
	}
	return s.secure.Address()
}

// Stats are counters of refused and rejected traffic.
type Stats struct {
	// DeniedPublishes counts publishes the ACL refused.
	DeniedPublishes uint64
	// DeniedSubscriptions counts topic filters the ACL refused.
	DeniedSubscriptions uint64
	// RejectedUplinks counts admitted publishes whose content the platform
	// could not use (a malformed properties report, for instance).
	RejectedUplinks uint64
	// CredentialChecks counts CONNECTs whose credentials were verified
	// (an HMAC, a certificate chain, a token): the work a ban saves.
	CredentialChecks uint64
	// BannedConnects counts connections and CONNECTs refused because
	// their address or identity is banned.
	BannedConnects uint64
	// RefusedConnections counts connections closed at accept for the
	// connect rate or the caps on connections before CONNECT.
	RefusedConnections uint64
	// OversizedConnects counts connections closed because their CONNECT
	// claimed more than Limits.MaxConnectBytes (or, MQTT 5, carried too
	// many user properties).
	OversizedConnects uint64
	// LimitedPublishes counts publishes refused by the limits (uplink
	// budget, topic length, user properties, QoS 2, payload size).
	LimitedPublishes uint64
	// Connects counts CONNECTs by result: "accepted", the refusing
	// CONNACK ("identifier_rejected", "server_unavailable",
	// "bad_credentials", "not_authorized", "packet_too_large"), or
	// "banned" (not authorized because a ban holds). Every result is a
	// key.
	Connects map[string]uint64
	// AuthFailures counts the CONNECTs refused for failed authentication
	// by reason: "unknown_device" (or product), "bad_secret" (password,
	// sign or token), "stale_timestamp" (sign_type 1),
	// "bad_certificate". Every reason is a key.
	AuthFailures map[string]uint64
	// MessagesReceived and MessagesSent count PUBLISH packets from and
	// to clients.
	MessagesReceived uint64
	MessagesSent     uint64
}

// Stats returns the counters since start.
func (s *Server) Stats() Stats {
	connects, failures := s.stats.outcomes.snapshot()
	return Stats{
		DeniedPublishes:     s.acl.deniedPublishes.Load(),
		DeniedSubscriptions: s.acl.deniedSubscriptions.Load(),
		RejectedUplinks:     s.uplink.rejected.Load(),
		CredentialChecks:    s.stats.credentialChecks.Load(),
		BannedConnects:      s.stats.bannedConnects.Load(),
		RefusedConnections:  s.stats.refusedConnections.Load(),
		OversizedConnects:   s.stats.oversizedConnects.Load(),
		LimitedPublishes:    s.stats.limitedPublishes.Load(),
		Connects:            connects,
		AuthFailures:        failures,
		MessagesReceived:    uint64(atomic.LoadInt64(&s.broker.Info.MessagesReceived)),
		MessagesSent:        uint64(atomic.LoadInt64(&s.broker.Info.MessagesSent)),
	}
}

// Connected counts the clients connected now (authenticated, CONNACK
// sent or being sent); a gateway's sub-devices are not among them.
func (s *Server) Connected() int { return int(atomic.LoadInt64(&s.broker.Info.ClientsConnected)) }

// Kick ends a device's session (registry.Kicker): it was frozen, deleted,
// or its credentials were reset with force_disconnect. MQTT 5 clients are
// told 0x98 administrative action. A sub-device logged in through a
// gateway is logged out of it; the gateway stays connected.
func (s *Server) Kick(deviceID, reason string) {
	if p, ok := s.conns.gatewayOf(deviceID); ok {
		if sub, ok := s.conns.logout(p.conn, p.owner); ok {
			s.reg.Disconnected(sub.device, sub.session)
			s.log.Info("sub-device logged out of its gateway", "device", deviceID, "gateway", p.conn.device, "reason", reason)
		}
	}
	cl, ok := s.session(deviceID)
	if !ok {
		return
	}
	s.log.Info("disconnecting device", "device", deviceID, "reason", reason)
	// Writing the DISCONNECT may block on a stalled connection; the
	// registry's caller must not.
	go func() { _ = s.broker.DisconnectClient(cl, packets.ErrAdministrativeAction) }()
}

// session returns the device's live session, if any.
func (s *Server) session(deviceID string) (*mochi.Client, bool) {
	cl, ok := s.broker.Clients.Get(deviceID)
	return cl, ok && !cl.Closed()
}

// subscribed reports whether the device's session subscribes to a filter
// matching topic.
func (s *Server) subscribed(deviceID, topic string) bool {
	_, ok := s.broker.Topics.Subscribers(topic).Subscriptions[deviceID]
	return ok
}

// errStalled ends a connection that did not take a downlink in time.
var errStalled = errors.New("device did not take a downlink in time")

// deliver writes a platform downlink at QoS 1 straight to the device's
// current session, subscribed or not: the Huawei Java and Python SDKs
// never subscribe to their sys/ topics, yet IoTDA delivers there. It
// bypasses mochi's topic routing, so it reaches exactly this device, and
// reports ErrNotConnected when the device has no live session. The packet
// is tracked in flight like mochi's own, so the device's PUBACK completes
// it. A device that does not take the packet before ctx ends is stalled:
// its connection is closed, which also ends the write.
func (s *Server) deliver(ctx context.Context, deviceID, topic string, payload []byte) error {
	cl, ok := s.session(deviceID)
	if !ok {
		return registry.ErrNotConnected
	}
	id, err := cl.NextPacketID()
	if err != nil {
		return fmt.Errorf("mqtt: device %s has too many unacknowledged downlinks: %w", deviceID, err)
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    uint16(id),
		Created:     time.Now().Unix(),
	}
	if cl.State.Inflight.Set(pk) {
		atomic.AddInt64(&s.broker.Info.Inflight, 1)
	}
	cl.State.Inflight.DecreaseSendQuota()
	stop := context.AfterFunc(ctx, func() { cl.Stop(errStalled) })
	err = cl.WritePacket(pk)
	stop()
	if err != nil {
		if cl.State.Inflight.Delete(pk.PacketID) {
			atomic.AddInt64(&s.broker.Info.Inflight, -1)
			cl.State.Inflight.IncreaseSendQuota()
		}
		s.log.Debug("downlink not written", "device", deviceID, "topic", topic, "err", err)
		return registry.ErrNotConnected
	}
	return nil
}

// demoted is the log handler given to mochi: its records below Error go
// out at Debug. The hooks log what an operator needs (connections,
// refusals with their reasons); mochi's own per-connection records (a
// Warn with an empty message for every closed connection, packet dumps)
// would drown them.
type demoted struct{ slog.Handler }

func (d demoted) Enabled(ctx context.Context, l slog.Level) bool {
	return d.Handler.Enabled(ctx, demote(l))
}

func (d demoted) Handle(ctx context.Context, r slog.Record) error {
	r.Level = demote(r.Level)
	return d.Handler.Handle(ctx, r)
}

func (d demoted) WithAttrs(as []slog.Attr) slog.Handler { return demoted{d.Handler.WithAttrs(as)} }

func (d demoted) WithGroup(name string) slog.Handler { return demoted{d.Handler.WithGroup(name)} }

func demote(l slog.Level) slog.Level {
	if l < slog.LevelError {
		return slog.LevelDebug
	}
	return l
}
