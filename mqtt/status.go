package mqtt

import (
	"context"
	"log/slog"
	"sync"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// statusRegistry is what status reporting needs from the registry.
type statusRegistry interface {
	Connected(ctx context.Context, id string) (registry.Session, error)
	Disconnected(id string, s registry.Session) (superseded bool)
	Superseded(id string, s registry.Session) bool
}

// statusHook tells the registry when a device's session starts
// (activation, ONLINE) and ends (DISCONNECT, network loss, keepalive
// expiry, takeover, kick: OFFLINE unless a newer session of the device is
// current). When a gateway's connection ends, so do the sessions of the
// sub-devices it had logged in. Registration connections speak for no
// device and are not reported. statusHook is also where a connection's
// shared state (conns) ends.
//
// A session is reported as it is established, just before its CONNACK
// and before it takes over the device's previous session: reported any
// later, the old session's end would show the device OFFLINE for a
// moment during every takeover. If the CONNACK then cannot be written,
// mochi skips OnDisconnect but expires the client a second later, and
// OnClientExpired ends the session instead.
//
// One device's sessions are established one at a time (establishing),
// from OnSessionEstablish to OnSessionEstablished, by which time mochi
// has taken the previous connection over and added the new one to its
// client map: it does the two in steps with nothing held between, so two
// connects of a device at once could both take over the same old
// connection, and the later add would orphan the earlier connection
// (open, ONLINE, out of reach of kicks and downlinks).
type statusHook struct {
	mochi.HookBase
	reg   statusRegistry
	conns *conns
	log   *slog.Logger
	ctx   context.Context // ends at shutdown
	est   establishing
}

func (h *statusHook) ID() string { return "iotgate-status" }

func (h *statusHook) Provides(b byte) bool {
	return b == mochi.OnSessionEstablish || b == mochi.OnSessionEstablished ||
		b == mochi.OnDisconnect || b == mochi.OnClientExpired
}

func (h *statusHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	c := h.conns.get(cl)
	if c == nil || c.device == "" {
		return
	}
	t := h.est.acquire(c.device)
	c.mu.Lock()
	c.turn = t
	c.mu.Unlock()
	s, err := h.reg.Connected(h.ctx, c.device)
	if err != nil {
		// Frozen or deleted since the CONNECT was authenticated: the
		// closed connection gets no CONNACK.
		h.log.Warn("device session not recorded; closing it", "device", c.device, "err", err)
		cl.Stop(packets.ErrNotAuthorized)
		h.endTurn(c)
		return
	}
	c.mu.Lock()
	c.session = s
	c.mu.Unlock()
	// Sessions start and end at debug: a reconnect storm of a fleet would
	// write two lines per device at info (see log_level). Checked first,
	// as the arguments allocate even when the line is not written.
	if h.log.Enabled(h.ctx, slog.LevelDebug) {
		h.log.Debug("device connected", "device", c.device, "remote", cl.Net.Remote, "listener", cl.Net.Listener,
			"mqtt_version", cl.Properties.ProtocolVersion)
	}
}

// OnSessionEstablished ends the connection's turn, mochi having added it
// to its client map, and closes it if another node took the device's
// session over meanwhile: that node's kick, sent while this connection
// was not in the map yet, found nothing to close.
func (h *statusHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	c := h.conns.get(cl)
	if c == nil || c.device == "" {
		return
	}
	h.endTurn(c)
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s != 0 && h.reg.Superseded(c.device, s) {
		h.log.Debug("session taken over while it was established; closing it", "device", c.device, "remote", cl.Net.Remote)
		cl.Stop(packets.ErrSessionTakenOver)
	}
}

// endTurn lets the device's next connect be established (once).
func (h *statusHook) endTurn(c *conn) {
	c.mu.Lock()
	t := c.turn
	c.turn = nil
	c.mu.Unlock()
	if t != nil {
		h.est.release(c.device, t)
	}
}

func (h *statusHook) OnDisconnect(cl *mochi.Client, err error, expire bool) {
	cause := err
	if c := cl.StopCause(); c != nil {
		cause = c
	}
	if superseded := h.end(cl, cause); superseded && expire && !awaitTakeover(cl, takeoverWait) {
		h.log.Debug("session superseded without a takeover", "device", cl.ID, "remote", cl.Net.Remote)
	}
}

func (h *statusHook) OnClientExpired(cl *mochi.Client) { h.end(cl, cl.StopCause()) }

// end ends the connection's sessions and reports whether a newer session
// of its device is current.
func (h *statusHook) end(cl *mochi.Client, cause error) (superseded bool) {
	c, subs := h.conns.remove(cl)
	if c == nil {
		return false
	}
	h.endTurn(c) // the CONNACK failed: no OnSessionEstablished
	for _, s := range subs {
		h.reg.Disconnected(s.device, s.session)
		h.log.Debug("sub-device logged out with its gateway", "device", s.device, "gateway", c.device)
	}
	c.mu.Lock()
	s := c.session
	c.mu.Unlock()
	if s == 0 {
		return false // a registration connection, or never established
	}
	superseded = h.reg.Disconnected(c.device, s)
	if h.log.Enabled(h.ctx, slog.LevelDebug) {
		h.log.Debug("device disconnected", "device", c.device, "remote", cl.Net.Remote, "cause", cause)
	}
	return superseded
}

// takeoverWait bounds awaitTakeover. The window it closes lasts
// microseconds; a session superseded otherwise (the device logged in
// through a gateway) is never marked and must not hold a goroutine long.
const takeoverWait = time.Second

// awaitTakeover holds an ending connection's goroutine until the
// connection taking over its session has marked it taken over, or until
// limit. mochi v2.7.9 (attachClient) deletes an ending clean session from
// its client map by client ID unless it is marked taken over, and the new
// connection (inheritClientSession) marks it only after closing it and
// unsubscribing it. An old goroutine that checks in between deletes the
// new session, added meanwhile: the device shows ONLINE but no downlink
// finds it. A newer session in the registry tells that a connection is
// in that window, since OnSessionEstablish records it just before mochi
// inherits the old session.
func awaitTakeover(cl *mochi.Client, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for !cl.IsTakenOver() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Microsecond)
	}
	return true
}

// establishing holds the turns of the devices whose sessions are being
// established: a connect of a device waits for the one before it;
// connects of different devices never wait for each other.
type establishing struct {
	mu sync.Mutex
	m  map[string]*turn
}

// turn is one device's: held by the connection being established.
type turn struct {
	mu   sync.Mutex
	refs int // holders and waiters; guarded by establishing.mu
}

func (e *establishing) acquire(dev string) *turn {
	e.mu.Lock()
	if e.m == nil {
		e.m = make(map[string]*turn)
	}
	t := e.m[dev]
	if t == nil {
		t = &turn{}
		e.m[dev] = t
	}
	t.refs++
	e.mu.Unlock()
	t.mu.Lock()
	return t
}

func (e *establishing) release(dev string, t *turn) {
	t.mu.Unlock()
	e.mu.Lock()
	if t.refs--; t.refs == 0 {
		delete(e.m, dev)
	}
	e.mu.Unlock()
}
