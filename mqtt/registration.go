package mqtt

import (
	"errors"
	"log/slog"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// registrationLinger is how long a registration connection may stay
// after its result was sent (reference §4.3: the platform closes it
// after 15 s at most).
const registrationLinger = 15 * time.Second

// errRegistrationDone ends a registration connection the device did not
// close itself.
var errRegistrationDone = errors.New("dynamic registration done")

// registrationHook answers a registration connection (authType register
// or regnwl, see aliauth.go): once its CONNACK is out, it publishes the
// result on /ext/register or /ext/regnwl at QoS 0 (the device need not
// subscribe), then closes the connection after the linger time unless the
// device has gone already. The ACL grants such a connection nothing, so it
// can do nothing else meanwhile.
type registrationHook struct {
	mochi.HookBase
	conns  *conns
	log    *slog.Logger
	linger time.Duration
}

func (h *registrationHook) ID() string { return "iotgate-registration" }

func (h *registrationHook) Provides(b byte) bool { return b == mochi.OnSessionEstablished }

func (h *registrationHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	c := h.conns.get(cl)
	if c == nil || c.registration == nil {
		return
	}
	if err := writePublish(cl, c.registration.topic, c.registration.payload); err != nil {
		// The registry has recorded the delivery: the device needs a
		// resetThing (register) or the quota allows another (regnwl).
		h.log.Warn("dynamic registration result not delivered", "username", string(cl.Properties.Username),
			"remote", cl.Net.Remote, "err", err)
	}
	time.AfterFunc(h.linger, func() { cl.Stop(errRegistrationDone) })
}
