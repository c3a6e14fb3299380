package mqtt

import (
	"context"
	"fmt"
	"strings"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/iotgate/iotgate/registry"
)

// SendMessage sends a downlink message at QoS 1 on m.Topic, or on
// $oc/devices/{id}/sys/messages/down when it is empty. A named topic must
// be one of the device's own downlink topics (in practice a custom
// $oc/devices/{id}/user/... topic): anything else is a
// *registry.ValidationError, so no application can reach another device
// through it. The device must be connected (registry.ErrNotConnected)
// and, for topics outside sys/, subscribed to the topic, as on IoTDA
// (registry.ErrNotSubscribed).
func (s *Server) SendMessage(ctx context.Context, d *registry.Device, m registry.DownMessage) error {
	topic := m.Topic
	if topic == "" {
		topic = messagesDownTopic(d.DeviceID)
	} else if !mochi.IsValidFilter(topic, true) || !huaweiMayReceive(d.DeviceID, topic) {
		return &registry.ValidationError{Field: "topic",
			Reason: fmt.Sprintf("%q is not a downlink topic of device %s ($oc/devices/%[2]s/user/...)", topic, d.DeviceID)}
	}
	if suffix, _ := huaweiOwnSuffix(d.DeviceID, topic); !strings.HasPrefix(suffix, "sys/") && !s.subscribed(d.DeviceID, topic) {
		if _, online := s.session(d.DeviceID); !online {
			return registry.ErrNotConnected
		}
		return registry.ErrNotSubscribed
	}
	if err := s.deliver(ctx, d.DeviceID, topic, m.Payload); err != nil {
		return err
	}
	s.log.Debug("message sent", "device", d.DeviceID, "message_id", m.MessageID, "topic", topic)
	return nil
}
