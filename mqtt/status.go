package mqtt

import (
	"context"
	"log/slog"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// statusRegistry is what status reporting needs from the registry.
type statusRegistry interface {
	Connected(ctx context.Context, id string) (registry.Session, error)
	Disconnected(id string, s registry.Session) (superseded bool)
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
type statusHook struct {
	mochi.HookBase
	reg   statusRegistry
	conns *conns
	log   *slog.Logger
	ctx   context.Context // ends at shutdown
}

func (h *statusHook) ID() string { return "iotgate-status" }

func (h *statusHook) Provides(b byte) bool {
	return b == mochi.OnSessionEstablish || b == mochi.OnDisconnect || b == mochi.OnClientExpired
}

func (h *statusHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	c := h.conns.get(cl)
	if c == nil || c.device == "" {
		return
	}
	s, err := h.reg.Connected(h.ctx, c.device)
	if err != nil {
		// Frozen or deleted since the CONNECT was authenticated: the
		// closed connection gets no CONNACK.
		h.log.Warn("device session not recorded; closing it", "device", c.device, "err", err)
		cl.Stop(packets.ErrNotAuthorized)
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
