package mqtt

import (
	"log/slog"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
)

// aclHook confines every device to its own topics (see topics.go): it
// may publish its uplink topics and subscribe to filters that can match
// its downlink topics, and nothing else. There is no allow-by-default
// case: a topic no rule grants is refused.
//
// mochi turns a refusal into SUBACK 0x80 (MQTT 5: 0x87) for a
// subscription; for a PUBLISH into a silent drop at QoS 0, PUBACK 0x87 for
// MQTT 5, and for MQTT 3.1.1 at QoS 1, which has no negative PUBACK, into
// closing the connection (MQTT-3.3.5-2). Refusals are counted.
type aclHook struct {
	mochi.HookBase
	log *slog.Logger

	deniedPublishes     atomic.Uint64
	deniedSubscriptions atomic.Uint64
}

func (h *aclHook) ID() string { return "iotgate-acl" }

func (h *aclHook) Provides(b byte) bool { return b == mochi.OnACLCheck }

// OnACLCheck decides for a device's PUBLISH (write) or SUBSCRIBE, and for
// every message routed to it. The client id is the device id (authHook).
func (h *aclHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	if write {
		if mayPublish(cl.ID, topic) {
			return true
		}
		h.deniedPublishes.Add(1)
		h.log.Debug("publish refused", "device", cl.ID, "topic", topic)
		return false
	}
	if mayReceive(cl.ID, topic) {
		return true
	}
	h.deniedSubscriptions.Add(1)
	h.log.Debug("subscription refused", "device", cl.ID, "filter", topic)
	return false
}
