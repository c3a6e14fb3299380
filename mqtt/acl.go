package mqtt

import (
	"log/slog"
	"sync/atomic"

	mochi "github.com/mochi-mqtt/server/v2"
)

// aclHook confines every connection to the topic spaces of its identity
// (see topics.go, alitopics.go, conn.go): it may publish its uplink
// topics and subscribe to filters that can match its downlink topics, and
// nothing else. There is no allow-by-default case: a topic no rule grants
// is refused, and a registration connection is granted nothing.
//
// mochi turns a refusal into SUBACK 0x80 (MQTT 5: 0x87) for a
// subscription; for a PUBLISH into a silent drop at QoS 0, PUBACK 0x87 for
// MQTT 5, and for MQTT 3.1.1 at QoS 1, which has no negative PUBACK, into
// closing the connection (MQTT-3.3.5-2). Refusals are counted.
type aclHook struct {
	mochi.HookBase
	conns *conns
	log   *slog.Logger

	deniedPublishes     atomic.Uint64
	deniedSubscriptions atomic.Uint64
}

func (h *aclHook) ID() string { return "iotgate-acl" }

func (h *aclHook) Provides(b byte) bool { return b == mochi.OnACLCheck }

// OnACLCheck decides for a connection's PUBLISH (write) or SUBSCRIBE.
func (h *aclHook) OnACLCheck(cl *mochi.Client, topic string, write bool) bool {
	c := h.conns.get(cl)
	if write {
		if c != nil {
			if _, _, ok := c.mayPublish(topic); ok {
				return true
			}
		}
		h.deniedPublishes.Add(1)
		h.log.Debug("publish refused", "client", cl.ID, "topic", topic)
		return false
	}
	if c != nil && c.mayReceive(topic) {
		return true
	}
	h.deniedSubscriptions.Add(1)
	h.log.Debug("subscription refused", "client", cl.ID, "filter", topic)
	return false
}
