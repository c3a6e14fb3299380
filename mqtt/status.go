package mqtt

import (
	"context"
	"log/slog"
	"sync"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// statusRegistry is what status reporting needs from the registry.
type statusRegistry interface {
	Connected(ctx context.Context, id string) (registry.Session, error)
	Disconnected(id string, s registry.Session)
}

// statusHook tells the registry when a device's session starts
// (activation, ONLINE) and ends (DISCONNECT, network loss, keepalive
// expiry, takeover, kick: OFFLINE unless a newer session of the device is
// current).
//
// A session is reported as it is established, just before its CONNACK
// and before it takes over the device's previous session: reported any
// later, the old session's end would show the device OFFLINE for a
// moment during every takeover. If the CONNACK then cannot be written,
// mochi skips OnDisconnect but expires the client a second later, and
// OnClientExpired ends the session instead.
type statusHook struct {
	mochi.HookBase
	reg statusRegistry
	log *slog.Logger
	ctx context.Context // ends at shutdown

	sessions sync.Map // *mochi.Client → registry.Session
}

func (h *statusHook) ID() string { return "iotgate-status" }

func (h *statusHook) Provides(b byte) bool {
	return b == mochi.OnSessionEstablish || b == mochi.OnDisconnect || b == mochi.OnClientExpired
}

func (h *statusHook) OnSessionEstablish(cl *mochi.Client, _ packets.Packet) {
	s, err := h.reg.Connected(h.ctx, cl.ID)
	if err != nil {
		// Frozen or deleted since the CONNECT was authenticated: the
		// closed connection gets no CONNACK.
		h.log.Warn("device session not recorded; closing it", "device", cl.ID, "err", err)
		cl.Stop(packets.ErrNotAuthorized)
		return
	}
	h.sessions.Store(cl, s)
	h.log.Info("device connected", "device", cl.ID, "remote", cl.Net.Remote, "listener", cl.Net.Listener,
		"mqtt_version", cl.Properties.ProtocolVersion)
}

func (h *statusHook) OnDisconnect(cl *mochi.Client, err error, _ bool) {
	cause := err
	if c := cl.StopCause(); c != nil {
		cause = c
	}
	h.end(cl, cause)
}

func (h *statusHook) OnClientExpired(cl *mochi.Client) { h.end(cl, cl.StopCause()) }

func (h *statusHook) end(cl *mochi.Client, cause error) {
	s, ok := h.sessions.LoadAndDelete(cl)
	if !ok {
		return
	}
	h.reg.Disconnected(cl.ID, s.(registry.Session))
	h.log.Info("device disconnected", "device", cl.ID, "remote", cl.Net.Remote, "cause", cause)
}
