package mqtt

import (
	"context"
	"fmt"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// CheckMessage validates a downlink message's topic before the registry
// stores it (registry.MessageSender): a named topic must be one of the
// device's own downlink topics (in practice a custom
// $oc/devices/{id}/user/... topic, or /{product_id}/{node_id}/user/...
// for a device that connects the Alibaba way); anything else is a
// *registry.ValidationError, so no application can reach another device
// through it.
func (s *Server) CheckMessage(d *registry.Device, m registry.DownMessage) error {
	if m.Topic == "" {
		return nil
	}
	if !mochi.IsValidFilter(m.Topic, true) || !huaweiMayReceive(d.DeviceID, m.Topic) && !aliMayReceiveMessage(d, m.Topic) {
		return &registry.ValidationError{Field: "topic",
			Reason: fmt.Sprintf("%q is not a downlink topic of device %s ($oc/devices/%[2]s/user/... or /%s/%s/user/...)",
				m.Topic, d.DeviceID, d.ProductID, d.NodeID)}
	}
	return nil
}

// SendMessage sends a downlink message at QoS 1 on m.Topic, or on
// $oc/devices/{id}/sys/messages/down when it is empty (for a sub-device
// online through an IoTDA gateway, the gateway's: the standard format's
// object_device_id names the sub-device) (registry.MessageSender). The device must be connected
// (registry.ErrNotConnected) and, for topics outside sys/, subscribed to
// the topic, as on IoTDA (registry.ErrNotSubscribed). A session of the
// Alibaba dialect must be subscribed to any topic, the default one
// included (which it cannot subscribe to), as on Alibaba.
func (s *Server) SendMessage(ctx context.Context, d *registry.Device, m registry.DownMessage) error {
	if err := s.CheckMessage(d, m); err != nil {
		return err
	}
	to, topic := d.DeviceID, m.Topic
	if topic == "" {
		to = s.carrier(d.DeviceID) // a sub-device's: its gateway's
		topic = messagesDownTopic(to)
	}
	_, alibaba := s.alibabaConn(to)
	if suffix, _ := huaweiOwnSuffix(to, topic); (alibaba || !strings.HasPrefix(suffix, "sys/")) && !s.subscribed(to, topic) {
		if _, online := s.session(to); !online {
			return registry.ErrNotConnected
		}
		return registry.ErrNotSubscribed
	}
	if err := s.deliver(ctx, to, topic, m.Payload); err != nil {
		return err
	}
	s.log.Debug("message sent", "device", d.DeviceID, "message_id", m.MessageID, "topic", topic)
	return nil
}

// readyRegistry is what readyHook needs from the registry.
type readyRegistry interface {
	// SessionReady starts delivering what the registry holds for the
	// device (downlink messages sent while it was offline).
	SessionReady(ctx context.Context, deviceID string)
}

// readyHook tells the registry when a device's session can take
// downlinks: after its CONNACK is written (OnSessionEstablished), not
// when the session is recorded (statusHook, before the CONNACK), since a
// PUBLISH must not reach the device before its CONNACK. A device that
// subscribes to custom topics after connecting gets messages for them
// FAILED (not subscribed), as on IoTDA; sys/ topics need no subscription.
type readyHook struct {
	mochi.HookBase
	reg   readyRegistry
	conns *conns
	ctx   context.Context
}

func (h *readyHook) ID() string { return "iotgate-ready" }

func (h *readyHook) Provides(b byte) bool { return b == mochi.OnSessionEstablished }

func (h *readyHook) OnSessionEstablished(cl *mochi.Client, _ packets.Packet) {
	if c := h.conns.get(cl); c != nil && c.device != "" {
		h.reg.SessionReady(h.ctx, c.device)
	}
}
