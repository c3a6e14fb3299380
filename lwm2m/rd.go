package lwm2m

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/iotgate/iotgate/registry"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
)

func bytesReader(s string) io.ReadSeeker { return bytes.NewReader([]byte(s)) }

// maxRegisterPayload bounds a Register or Update payload (Huawei's CoAP
// limit is 1 KB; object lists of big clients run longer).
const maxRegisterPayload = 16 * 1024

// serveRD is the registration interface's collection: POST /rd registers.
func (s *Server) serveRD(w mux.ResponseWriter, r *mux.Message) {
	if r.Code() != codes.POST {
		respond(w, codes.MethodNotAllowed, "Register is POST /rd")
		return
	}
	cc, ok := w.Conn().(*udpClient.Conn)
	if !ok {
		respond(w, codes.InternalServerError, "")
		return
	}
	s.register(w, r, cc, stateOf(cc))
	if m := w.Message(); m != nil {
		s.stats.registerAnswered(m.Code())
	}
}

// register handles Register: every check that can refuse the client runs
// before the registry hears of it, so a refusal (4.00, 4.03, 4.12) leaves
// the registry unchanged.
func (s *Server) register(w mux.ResponseWriter, r *mux.Message, cc *udpClient.Conn, st *connState) {
	queries, _ := r.Options().Queries()
	p, err := parseRegQuery(queries, true)
	if err != nil {
		respond(w, codes.BadRequest, err.Error())
		return
	}
	if !st.secure {
		// A retransmitted Register (its 2.01 was lost) gets the
		// registration it made rather than a second one: go-coap's response
		// cache, which would have answered it, leaves with the idle
		// connection (see idleMonitor).
		if e := s.store.endpoint(p.Endpoint); e != nil && e.retransmits(cc.RemoteAddr().String(), r.MessageID(), s.now()) {
			respondRegistered(w, e.id)
			return
		}
	}
	if !supportedVersion(p.Version) {
		respond(w, codes.PreconditionFailed, "unsupported LwM2M version "+p.Version+"; this server speaks 1.x")
		return
	}
	lifetime := DefaultLifetime
	if p.Lifetime > 0 {
		lifetime = p.Lifetime
	}
	if msg := s.checkLifetime(p.Lifetime); msg != "" {
		respond(w, codes.BadRequest, msg)
		return
	}
	body, err := readBody(r)
	if err != nil {
		respond(w, codes.RequestEntityTooLarge, err.Error())
		return
	}
	links, err := s.links.parse(body)
	if err != nil {
		respond(w, codes.BadRequest, "bad object links: "+err.Error())
		return
	}
	ctx, cancel := context.WithTimeout(s.ctx, s.o.RequestTimeout)
	defer cancel()
	addr := peerAddr(cc)
	if s.o.Guard.AddressBanned(addr) || s.o.Guard.IdentityBanned(p.Endpoint) {
		s.refuse(w, cc, st, p.Endpoint, errRefused("banned (endpoint or address)"))
		return
	}
	d, refusal := s.authorize(ctx, st, p.Endpoint)
	if refusal != nil {
		if refusal.failure != notFailed {
			s.stats.authFailures[refusal.failure].Add(1)
			s.o.Guard.AuthFailed(p.Endpoint, addr)
		}
		s.refuse(w, cc, st, p.Endpoint, refusal)
		return
	}
	session, err := s.reg.Connected(ctx, d.DeviceID)
	if err != nil {
		if errors.Is(err, registry.ErrFrozen) || errors.Is(err, registry.ErrNotFound) {
			s.refuse(w, cc, st, p.Endpoint, errRefused("device "+d.DeviceID+" is frozen or was deleted"))
			return
		}
		s.log.Error("lwm2m register: registry", "endpoint", p.Endpoint, "err", err)
		respond(w, codes.InternalServerError, "")
		return
	}
	now := s.now()
	reg := &Registration{
		ID: newRegistrationID(), Endpoint: p.Endpoint, DeviceID: d.DeviceID, Version: p.Version,
		Binding: p.Binding, QueueMode: p.queueMode(), SMS: p.SMS, Lifetime: lifetime,
		RootPath: links.Root, Objects: links.Objects, Formats: links.Formats, Secure: st.secure, Addr: cc.RemoteAddr().String(),
		RegisteredAt: now, UpdatedAt: now,
	}
	if reg.Binding == "" {
		reg.Binding = "U"
	}
	e := newEntry(reg, st.secure, session)
	e.regMID = r.MessageID()
	s.bind(e, cc, st)
	e.lastUplink.Store(now.UnixNano())
	replaced := ""
	if old := s.store.add(e, now.Add(lifetime)); old != nil {
		s.retire(old, "replaced by a new registration", old.conn.Load() != cc)
		replaced = old.id
	}
	s.markDirty(e) // after the old one's deletion was queued
	// At debug, as every session's start and end: a fleet re-registering
	// after an outage would write a line per device (see log_level).
	// Checked first, as the arguments allocate even when it is not written.
	if s.log.Enabled(s.ctx, slog.LevelDebug) {
		s.log.Debug("lwm2m registered", "endpoint", p.Endpoint, "device_id", d.DeviceID, "registration", reg.ID,
			"secure", st.secure, "binding", reg.Binding, "queue", reg.QueueMode, "lifetime", lifetime, "addr", reg.Addr,
			"replaced", replaced)
	}
	respondRegistered(w, reg.ID)
	s.runAfterResponse(r.Message, func() {
		if hasObject(links.Objects, 19) {
			s.observeAppData(e, cc)
		}
		s.uplink(e)
	})
}

// respondRegistered answers a Register with its registration's location.
func respondRegistered(w mux.ResponseWriter, id string) {
	respond(w, codes.Created, "",
		message.Option{ID: message.LocationPath, Value: []byte("rd")},
		message.Option{ID: message.LocationPath, Value: []byte(id)})
}

// checkLifetime returns why a requested lifetime (0 = not given) is
// refused, or "".
func (s *Server) checkLifetime(lt time.Duration) string {
	if lt == 0 {
		return ""
	}
	if lt < s.o.MinLifetime || lt > s.o.MaxLifetime {
		return "lt out of range: this server accepts " + s.o.MinLifetime.String() + " to " + s.o.MaxLifetime.String()
	}
	return ""
}

// refusal is a reason to answer 4.03. It goes to the log only: every
// refusal gets the same bare 4.03, so that a client learns nothing of
// which endpoints exist, which require DTLS or which are frozen.
type refusal struct {
	reason string
	// failure says why the client's credentials do not hold (an unknown
	// endpoint, another PSK identity's, a secure-only device over
	// NoSec); it counts towards a ban. notFailed for other refusals.
	failure authFailure
}

func (r *refusal) Error() string { return r.reason }

func errRefused(reason string) *refusal { return &refusal{reason: reason} }

func authRefused(why authFailure, reason string) *refusal {
	return &refusal{reason: reason, failure: why}
}

// peerAddr is the client's address, for the guard (invalid if unknown).
func peerAddr(cc *udpClient.Conn) netip.Addr {
	if ua, ok := cc.RemoteAddr().(*net.UDPAddr); ok {
		return ua.AddrPort().Addr().Unmap()
	}
	return netip.Addr{}
}

// refuse answers a refused Register: 4.03 without a payload, whatever the
// cause (over NoSec the source address proves nothing, so a diagnostic
// would tell anyone which node ids exist and in what state, and would
// make the answer larger than a short request). The reason is logged at
// info under the refusal budget, so that a flood cannot fill the disk.
func (s *Server) refuse(w mux.ResponseWriter, cc *udpClient.Conn, st *connState, endpoint string, why *refusal) {
	s.limited.Info("lwm2m registration refused", "endpoint", endpoint, "addr", cc.RemoteAddr().String(),
		"secure", st.secure, "identity", st.identity, "reason", why.reason)
	respond(w, codes.Forbidden, "")
}

// authorize decides whether this connection may register endpoint: the
// endpoint must name a device that is not frozen; over DTLS the PSK
// identity must name the same device, over NoSec the device must not
// require secure access.
func (s *Server) authorize(ctx context.Context, st *connState, endpoint string) (*registry.Device, *refusal) {
	d, err := s.sec.DeviceByEndpoint(ctx, endpoint)
	if err != nil {
		if !errors.Is(err, registry.ErrNotFound) {
			s.log.Error("lwm2m: security store", "endpoint", endpoint, "err", err)
			return nil, errRefused("cannot check the endpoint now")
		}
		return nil, authRefused(failedUnknownEndpoint, "unknown endpoint "+endpoint)
	}
	if st.secure {
		id, err := s.identityDevice(ctx, st)
		if err != nil || id != d.DeviceID {
			return nil, authRefused(failedIdentityMismatch, "endpoint "+endpoint+" does not match the DTLS PSK identity "+st.identity)
		}
	} else if d.Auth.SecureAccess {
		return nil, authRefused(failedSecureRequired, "device "+d.DeviceID+" requires DTLS (secure_access is true)")
	}
	if d.Frozen {
		return nil, errRefused("device " + d.DeviceID + " is frozen")
	}
	return d, nil
}

// identityDevice resolves (once per session) the device the DTLS PSK
// identity names.
func (s *Server) identityDevice(ctx context.Context, st *connState) (string, error) {
	if id := st.deviceID.Load(); id != nil {
		return *id, nil
	}
	d, err := s.sec.DeviceByEndpoint(ctx, st.identity)
	if err != nil {
		return "", err
	}
	st.deviceID.Store(&d.DeviceID)
	return d.DeviceID, nil
}

// bind makes cc the way to reach e: a DTLS session carries the
// registration (a previous session of it is closed); a NoSec client is
// reached at the address of its last Register or Update.
func (s *Server) bind(e *entry, cc *udpClient.Conn, st *connState) {
	if st.secure {
		if old := e.conn.Swap(cc); old != nil && old != cc {
			if ost := stateOf(old); ost != nil {
				ost.entry.CompareAndSwap(e, nil)
			}
			_ = old.Close()
		}
		st.entry.Store(e)
		return
	}
	if ua, ok := cc.RemoteAddr().(*net.UDPAddr); ok {
		prev := e.addr.Swap(ua)
		s.peers.put(addrPortOf(ua), addrPortOf(prev), e)
	}
}

func readBody(r *mux.Message) ([]byte, error) {
	if r.Body() == nil {
		return nil, nil
	}
	if n, err := r.BodySize(); err == nil && n > maxRegisterPayload {
		return nil, errors.New("payload too large")
	}
	return r.ReadBody()
}

// serveRegistration is one registration: POST /rd/{id} updates it,
// DELETE /rd/{id} de-registers.
func (s *Server) serveRegistration(w mux.ResponseWriter, r *mux.Message) {
	cc, ok := w.Conn().(*udpClient.Conn)
	if !ok {
		respond(w, codes.InternalServerError, "")
		return
	}
	if r.Code() != codes.POST && r.Code() != codes.DELETE {
		respond(w, codes.MethodNotAllowed, "Update is POST /rd/{id}, De-register DELETE /rd/{id}")
		return
	}
	st := stateOf(cc)
	ctx, cancel := context.WithTimeout(s.ctx, s.o.RequestTimeout)
	defer cancel()
	id := r.RouteParams.Vars["id"]
	e := s.store.get(id)
	if e == nil && s.o.Sessions != nil && s.o.Node != "" {
		var err error
		if e, err = s.adopt(ctx, id, st); err != nil {
			var fc *foreignClient
			if errors.As(err, &fc) {
				respond(w, codes.Forbidden, fc.msg)
				return
			}
			s.log.Error("lwm2m: looking up a registration of another node", "registration", id, "err", err)
			respond(w, codes.ServiceUnavailable, "")
			return
		}
	}
	if e == nil {
		respond(w, codes.NotFound, "unknown registration; register again")
		return
	}
	if msg := s.mayChange(ctx, st, e.secure, e.deviceID); msg != "" {
		respond(w, codes.Forbidden, msg)
		return
	}
	if r.Code() == codes.DELETE {
		if s.store.remove(e) {
			s.retire(e, "de-registered", false)
		}
		// The NoSec connection is left to the idle monitor: closed now, it
		// would drop the client's next datagram (a Register after a
		// reboot) if that raced the close.
		respond(w, codes.Deleted, "")
		return
	}
	s.update(w, r, cc, st, e)
}

// mayChange returns why the client on st may not change a registration
// of device made over DTLS or not (secure), or "" if it may. Only the
// client that registered may: over DTLS the same identity, over NoSec any
// NoSec peer (it has nothing else to prove, and NAT rebinding moves it).
func (s *Server) mayChange(ctx context.Context, st *connState, secure bool, device string) string {
	if st.secure {
		if id, err := s.identityDevice(ctx, st); err != nil || id != device {
			return "registration belongs to another DTLS identity"
		}
	} else if secure {
		return "registration was made over DTLS; update it over DTLS"
	}
	return ""
}

// foreignClient: a client asked to change a registration it may not.
type foreignClient struct{ msg string }

func (f *foreignClient) Error() string { return f.msg }

func (s *Server) update(w mux.ResponseWriter, r *mux.Message, cc *udpClient.Conn, st *connState, e *entry) {
	queries, _ := r.Options().Queries()
	p, err := parseRegQuery(queries, false)
	if err != nil {
		respond(w, codes.BadRequest, err.Error())
		return
	}
	if msg := s.checkLifetime(p.Lifetime); msg != "" {
		respond(w, codes.BadRequest, msg)
		return
	}
	body, err := readBody(r)
	if err != nil {
		respond(w, codes.RequestEntityTooLarge, err.Error())
		return
	}
	old := e.reg.Load()
	next := *old
	if len(body) > 0 {
		links, err := s.links.parse(body)
		if err != nil {
			respond(w, codes.BadRequest, "bad object links: "+err.Error())
			return
		}
		// New links replace the old ones, declared formats included, as
		// Leshan does: an Update without a payload keeps them all.
		next.RootPath, next.Objects, next.Formats = links.Root, links.Objects, links.Formats
	}
	if p.Lifetime > 0 {
		next.Lifetime = p.Lifetime
	}
	if p.Binding != "" {
		next.Binding = p.Binding
		next.QueueMode = p.queueMode()
	} else if p.Queue {
		next.QueueMode = true
	}
	if p.SMSSet {
		next.SMS = p.SMS
	}
	now := s.now()
	next.UpdatedAt, next.Addr = now, cc.RemoteAddr().String()
	deadline := now.Add(next.Lifetime)
	if !s.store.renew(e, deadline) {
		respond(w, codes.NotFound, "registration ended meanwhile; register again")
		return
	}
	e.reg.Store(&next)
	if durableChange(old, &next) || e.renewSaved(deadline, next.Lifetime) {
		s.markDirty(e)
	}
	s.bind(e, cc, st)
	e.lastUplink.Store(now.UnixNano())
	s.log.Debug("lwm2m registration updated", "endpoint", next.Endpoint, "registration", e.id, "lifetime", next.Lifetime, "addr", next.Addr)
	respond(w, codes.Changed, "")
	s.runAfterResponse(r.Message, func() {
		if hasObject(next.Objects, 19) && !hasObject(old.Objects, 19) {
			s.observeAppData(e, cc)
		}
		s.uplink(e)
	})
}
