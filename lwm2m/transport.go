package lwm2m

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/iotgate/iotgate/lwm2m/transport"
	"github.com/pion/dtls/v2"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/net/responsewriter"
	"github.com/plgd-dev/go-coap/v3/options/config"
	udpClient "github.com/plgd-dev/go-coap/v3/udp/client"
	udpServer "github.com/plgd-dev/go-coap/v3/udp/server"
)

// connState is what the server knows of one CoAP connection: a NoSec UDP
// peer address or a DTLS session. It hangs off the connection's context.
type connState struct {
	secure bool
	// identity is the PSK identity the DTLS client presented.
	identity string
	// deviceID caches the device the identity resolved to ("" until the
	// first request needed it).
	deviceID atomic.Pointer[string]
	// entry is the registration this DTLS session carries; it keeps the
	// session open beyond the idle timeout.
	entry atomic.Pointer[entry]
	// busy counts the messages being handled and the requests in flight
	// on the connection; the idle monitor leaves a busy connection open.
	busy atomic.Int32
	// sizes: the NoSec requests handled lately, by message ID (see
	// replaysNoLarger).
	sizes requestSizes
}

// requestSizes remembers the size of each NoSec request by message ID
// for as long as go-coap may answer a message with that ID from its
// response cache (udpClient.ExchangeLifetime). A device sends a few
// requests a lifetime (a Register, an Update), which the few slots held
// inline keep without an allocation; a chattier peer's spill into maps of
// two generations, the older dropped whole when the newer has lived a
// lifetime, so each request costs O(1) and a peer holds at most two
// lifetimes' IDs.
type requestSizes struct {
	mu        sync.Mutex
	recent    [4]sizeSeen
	cur, prev map[uint16]sizeSeen // nil until recent overflows
	since     int64               // when cur was started (Unix ns)
}

type sizeSeen struct {
	size int32
	mid  uint16
	at   int64 // Unix ns; 0: an empty slot
}

// replaysNoLarger reports whether req may be handled: go-coap answers a
// message whose ID it has answered before from its response cache,
// whatever the message holds, so a short datagram carrying the ID of a
// long request would draw the long request's answer, an amplifier
// towards a spoofed NoSec address (RFC 9175 §2.4). A real retransmission
// is the same message (RFC 7252 §4.5), so one shorter than the request
// first seen with its ID is dropped.
func (rs *requestSizes) replaysNoLarger(req *pool.Message, now time.Time) bool {
	return rs.admit(uint16(req.MessageID()), coapSize(req), now.UnixNano())
}

func (rs *requestSizes) admit(mid uint16, size int, now int64) bool {
	const lifetime = int64(udpClient.ExchangeLifetime)
	rs.mu.Lock()
	defer rs.mu.Unlock()
	live := func(e sizeSeen) bool { return e.at != 0 && now-e.at < lifetime }
	free := -1
	for i, e := range rs.recent {
		switch {
		case live(e) && e.mid == mid:
			return size >= int(e.size)
		case !live(e) && free < 0:
			free = i
		}
	}
	if rs.cur != nil {
		if now-rs.since >= lifetime {
			rs.prev, rs.cur, rs.since = rs.cur, make(map[uint16]sizeSeen), now
		}
		e, ok := rs.cur[mid]
		if !ok {
			e = rs.prev[mid]
		}
		if live(e) {
			return size >= int(e.size)
		}
	}
	e := sizeSeen{size: int32(size), mid: mid, at: now}
	switch {
	case free >= 0:
		rs.recent[free] = e
	default:
		if rs.cur == nil {
			rs.cur, rs.since = make(map[uint16]sizeSeen), now
		}
		rs.cur[mid] = e
	}
	return true
}

type connStateKey struct{}

func stateOf(cc *udpClient.Conn) *connState {
	st, _ := cc.Context().Value(connStateKey{}).(*connState)
	return st
}

// serverConfig is the go-coap configuration shared by the NoSec and
// DTLS loops: our handler, idle handling and logging (see goCoAP).
type serverConfig struct {
	s       *Server
	handler func(*responsewriter.ResponseWriter[*udpClient.Conn], *pool.Message)
	secure  bool
}

func (s *Server) serverConfig(router *mux.Router, secure bool) serverConfig {
	requests := mux.ToHandler[*udpClient.Conn](router)
	return serverConfig{s: s, secure: secure, handler: func(w *responsewriter.ResponseWriter[*udpClient.Conn], r *pool.Message) {
		switch c := r.Code(); {
		case c > codes.Empty && c < codes.Created: // a request (class 0)
			requests(w, r)
			if !secure && !largeAnswerAllowed(r) {
				noLargerThan(w.Message(), r)
			}
		case c >= codes.Created:
			// A response nobody waits for: a notification of one of our
			// observations (go-coap hands us what it cannot match).
			s.handleNotification(w.Conn(), r)
		}
	}}
}

// noLargerThan drops the diagnostic payload of a NoSec answer that would
// be larger than its request. A NoSec source address proves nothing, and
// an answer larger than a spoofed request would make the server an
// amplifier (RFC 9175 §2.4); without a payload an answer is its header,
// the request's token and its options, which only a 2.01 to a Register
// (larger still) carries.
func noLargerThan(resp, req *pool.Message) {
	if !resp.IsModified() || resp.Body() == nil || coapSize(resp) <= coapSize(req) {
		return
	}
	resp.SetBody(nil)
	resp.Remove(message.ContentFormat)
}

// coapSize is m's size as a CoAP-over-UDP datagram (RFC 7252 §3),
// counted rather than marshalled: go-coap's Options.Marshal sizes a nil
// buffer through an error per option, which is a per-request cost.
func coapSize(m *pool.Message) int {
	n := 4 + len(m.Token())
	prev := message.OptionID(0)
	for _, o := range m.Options() { // kept sorted by ID
		n += 1 + optionExtSize(int(o.ID-prev)) + optionExtSize(len(o.Value)) + len(o.Value)
		prev = o.ID
	}
	if body, err := m.BodySize(); err == nil && body > 0 {
		n += 1 + int(body)
	}
	return n
}

// optionExtSize is how many extended bytes an option delta or length of
// v takes (RFC 7252 §3.1).
func optionExtSize(v int) int {
	switch {
	case v < 13:
		return 0
	case v < 269:
		return 1
	default:
		return 2
	}
}

func (c serverConfig) common(cfg *config.Common[*udpClient.Conn]) {
	cfg.Ctx = c.s.ctx
	cfg.Errors = func(err error) { c.s.log.Debug("coap", "secure", c.secure, "err", err) }
	cfg.ProcessReceivedMessage = c.processReceived
	// Retransmissions and idle checks run on the transport's tick
	// (go-coap's default is 4 s, too coarse for its 2 s acknowledgement
	// timeout).
	cfg.PeriodicRunner = transport.EveryTick
}

// connSweep is how a server of the transport checks its connections: a
// connection with a message being handled or a request of ours in flight
// every tick.
func (s *Server) connSweep(idle time.Duration) transport.Sweep {
	return transport.Sweep{Idle: idle, Busy: func(cc *udpClient.Conn) bool {
		st := stateOf(cc)
		return st != nil && st.busy.Load() > 0
	}}
}

func (c serverConfig) onNewConn(cc *udpClient.Conn) {
	st := &connState{secure: c.secure}
	if c.secure {
		if dc, ok := cc.NetConn().(*dtls.Conn); ok {
			st.identity = string(dc.ConnectionState().IdentityHint)
		}
	}
	cc.SetContextValue(connStateKey{}, st)
	c.s.conns.Add(1)
	cc.AddOnClose(func() { c.s.conns.Add(-1) })
}

func (c serverConfig) monitor() udpClient.InactivityMonitor {
	m := &idleMonitor{idle: c.s.o.NoSecIdleTimeout, keepRegistered: c.secure}
	if c.secure {
		m.idle = c.s.o.IdleTimeout
	}
	m.Notify()
	return m
}

// goCoAP is the configuration of go-coap's connections for our NoSec
// and DTLS loops (transport.UDPServer, transport.DTLSServer): go-coap's UDP server
// defaults, which are its DTLS server's too, with ours.
func (c serverConfig) goCoAP() udpServer.Config {
	cfg := udpServer.DefaultConfig
	c.common(&cfg.Common)
	cfg.Handler = c.handler
	cfg.OnNewConn = c.onNewConn
	cfg.CreateInactivityMonitor = c.monitor
	if cfg.GetToken == nil {
		cfg.GetToken = message.GetToken
	}
	if cfg.MessagePool == nil {
		cfg.MessagePool = pool.New(0, 0)
	}
	return cfg
}

// idleMonitor closes a connection that has been silent for idle and is
// not busy. A NoSec connection is only go-coap's view of a peer address
// (a goroutine, buffers, caches: ~10 KiB) and is made again by the next
// datagram or request, so it goes after a few seconds (NoSecIdleTimeout)
// rather than staying with every registered client; what go-coap's
// per-connection response cache did for retransmitted requests, Register
// and notifications do by message ID (see register and
// handleNotification). A DTLS session that carries a registration is
// kept: it lives as long as the registration, so a sleeping NB-IoT device
// wakes up into its session without a new handshake.
type idleMonitor struct {
	last           atomic.Int64
	idle           time.Duration
	keepRegistered bool
}

func (m *idleMonitor) Notify() { m.last.Store(time.Now().UnixNano()) }

func (m *idleMonitor) CheckInactivity(now time.Time, cc *udpClient.Conn) {
	if now.UnixNano()-m.last.Load() < int64(m.idle) {
		return
	}
	st := stateOf(cc)
	if st != nil && st.busy.Load() > 0 {
		return
	}
	if m.keepRegistered && st != nil && st.entry.Load() != nil {
		return
	}
	_ = cc.Close()
}

// afterResponse carries work a request handler wants done once its
// response is on the wire (the requests of the registration's
// post-processing must not overtake the 2.01 that announces it).
type afterResponse struct{ fn func() }

type afterResponseKey struct{}

// processReceived hands every message go-coap queued for a connection to
// a pooled worker (see workers) and waits until its response is sent, so
// a connection's messages are still handled one at a time and in order,
// while go-coap's goroutine for the connection keeps a minimal stack.
// Work a handler left for after its response runs on the same worker once
// the connection's goroutine is released.
func (c serverConfig) processReceived(req *pool.Message, cc *udpClient.Conn, h config.HandlerFunc[*udpClient.Conn]) {
	var a *afterResponse
	if code := req.Code(); code >= codes.GET && code <= codes.DELETE {
		a = &afterResponse{}
		req.SetContext(context.WithValue(req.Context(), afterResponseKey{}, a))
	}
	st := stateOf(cc)
	if st != nil && !st.secure && (req.Type() == message.Confirmable || req.Type() == message.NonConfirmable) &&
		!st.sizes.replaysNoLarger(req, time.Now()) {
		c.s.log.Debug("lwm2m: a NoSec message shorter than the one first sent with its message ID dropped",
			"addr", cc.RemoteAddr().String(), "mid", req.MessageID())
		cc.ReleaseMessage(req)
		return
	}
	if st != nil {
		st.busy.Add(1)
	}
	done := make(chan struct{})
	c.s.work.run(func() {
		cc.ProcessReceivedMessageWithHandler(req, h)
		if st != nil {
			st.busy.Add(-1)
		}
		close(done)
		if a != nil && a.fn != nil {
			a.fn()
		}
	})
	<-done
}

// runAfterResponse schedules fn for when r's response has been sent.
func (s *Server) runAfterResponse(r *pool.Message, fn func()) {
	if a, ok := r.Context().Value(afterResponseKey{}).(*afterResponse); ok {
		a.fn = fn
		return
	}
	s.work.run(fn)
}

// router is the registration interface's routing.
func (s *Server) router() *mux.Router {
	r := mux.NewRouter()
	r.SetErrorHandler(func(err error) { s.log.Debug("coap router", "err", err) })
	r.DefaultHandle(mux.HandlerFunc(func(w mux.ResponseWriter, req *mux.Message) {
		respond(w, codes.NotFound, "no such resource; the registration interface is /rd")
	}))
	r.HandleFunc("/rd", s.serveRD)
	r.HandleFunc("/rd/{id}", s.serveRegistration)
	r.HandleFunc("/fw/{token}", s.serveFirmware)
	return r
}

// respond sets a response with an optional diagnostic payload (text/plain,
// as CoAP §5.5.2 suggests for errors).
func respond(w mux.ResponseWriter, code codes.Code, diagnostic string, opts ...message.Option) {
	var err error
	if diagnostic == "" {
		err = w.SetResponse(code, message.TextPlain, nil, opts...)
	} else {
		err = w.SetResponse(code, message.TextPlain, bytesReader(diagnostic), opts...)
	}
	_ = err // only fails on option overflow, which our options cannot cause
}
