package mqtt

import (
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Limits of IoTDA's MQTT (reference §4.1, §4.4) that mochi's capabilities
// do not express on their own.
const (
	// MaxPayload is the largest message a device may publish.
	MaxPayload = 1 << 20
	// maxPacket bounds a whole PUBLISH: the payload plus room for the
	// topic (at most ~400 bytes here) and MQTT 5 properties.
	maxPacket = MaxPayload + 8<<10
)

// limitsHook refuses what IoTDA does not support:
//   - QoS 2 publishes: the connection is closed (MQTT 5: DISCONNECT 0x9B
//     QoS not supported, as MQTT-3.2.2-11 requires after CONNACK
//     advertised Maximum QoS 1). MQTT 3.1.1 cannot be told QoS 1 is the
//     maximum, and answering a QoS 2 PUBLISH with a PUBACK would break
//     its flow, so refusing is the only correct choice. Subscriptions
//     asking QoS 2 are granted QoS 1 (mochi, MaximumQos 1).
//   - oversized publishes: payloads above MaxPayload close the connection
//     (MQTT 5: DISCONNECT 0x95 packet too large).
//   - will messages: dropped at CONNECT. A will would be published on the
//     device's behalf without an ACL check, and IoTDA has none.
type limitsHook struct {
	mochi.HookBase
	log *slog.Logger
}

func (h *limitsHook) ID() string { return "iotgate-limits" }

func (h *limitsHook) Provides(b byte) bool {
	return b == mochi.OnConnect || b == mochi.OnPacketRead
}

func (h *limitsHook) OnConnect(cl *mochi.Client, pk packets.Packet) error {
	if pk.Connect.WillFlag {
		h.log.Debug("will message ignored", "client_id", pk.Connect.ClientIdentifier, "will_topic", pk.Connect.WillTopic)
		cl.Properties.Will = mochi.Will{}
	}
	return nil
}

func (h *limitsHook) OnPacketRead(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if pk.FixedHeader.Type != packets.Publish {
		return pk, nil
	}
	var code packets.Code
	switch {
	case pk.FixedHeader.Qos > 1:
		code = packets.ErrQosNotSupported
	case len(pk.Payload) > MaxPayload:
		code = packets.ErrPacketTooLarge
	default:
		return pk, nil
	}
	h.log.Info("publish refused; closing the connection", "device", cl.ID, "topic", pk.TopicName,
		"qos", pk.FixedHeader.Qos, "bytes", len(pk.Payload), "reason", code.Reason)
	if cl.Properties.ProtocolVersion == 5 {
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: code.Code})
	}
	// Only ErrRejectPacket makes mochi end the read loop.
	return pk, packets.ErrRejectPacket
}
