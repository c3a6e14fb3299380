package mqtt

import (
	"log/slog"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"golang.org/x/time/rate"
)

// Limits of IoTDA's MQTT (reference §4.1, §4.4) that mochi's capabilities
// do not express on their own.
const (
	// MaxPayload is the largest message a device may publish.
	MaxPayload = 1 << 20
	// maxPacket bounds a whole PUBLISH: the payload plus room for the
	// topic (at most MaxTopicBytes) and MQTT 5 properties.
	maxPacket = MaxPayload + 8<<10
)

// Limits bound what a client can make the server hold or do, before and
// after authentication. A zero field takes DefaultLimits' value.
type Limits struct {
	// MaxConnectBytes caps the CONNECT packet, fixed header included;
	// a connection whose CONNECT claims more is closed unanswered.
	MaxConnectBytes int
	// MaxPending caps the connections that have not sent a whole
	// CONNECT yet (TLS handshake included), in all and per source
	// address (IPv4 address, IPv6 /64).
	MaxPending           int
	MaxPendingPerAddress int
	// ConnectRate and ConnectBurst are each listener's budget of new
	// connections a second; over it a connection is closed at accept.
	ConnectRate  float64
	ConnectBurst int
	// MaxUserProperties caps the MQTT 5 user properties of a CONNECT or
	// PUBLISH; MaxTopicBytes the topic of a PUBLISH.
	MaxUserProperties int
	MaxTopicBytes     int
	// UplinkRate (publishes a second, bursts of UplinkBurst) and
	// UplinkBytes (payload bytes a second) are each connection's budget
	// (Huawei: 50 messages and 1 MB a second per connection). A publish
	// over it is refused: PUBACK 0x97 (quota exceeded) for MQTT 5 QoS 1,
	// dropped for QoS 0, and the connection closed for MQTT 3.1.1, which
	// has no way to refuse a publish.
	UplinkRate  float64
	UplinkBurst int
	UplinkBytes int
	// RefusalLogRate and RefusalLogBurst bound the info lines a second
	// that refusals write (refusalLog).
	RefusalLogRate  float64
	RefusalLogBurst int
}

// DefaultLimits are the limits a zero Limits field takes.
func DefaultLimits() Limits {
	return Limits{
		MaxConnectBytes:      8 << 10,
		MaxPending:           5_000,
		MaxPendingPerAddress: 256,
		ConnectRate:          30_000,
		ConnectBurst:         30_000,
		MaxUserProperties:    32,
		MaxTopicBytes:        512,
		UplinkRate:           50,
		UplinkBurst:          50,
		UplinkBytes:          1 << 20,
		RefusalLogRate:       10,
		RefusalLogBurst:      100,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	set := func(v *int, def int) {
		if *v <= 0 {
			*v = def
		}
	}
	setf := func(v *float64, def float64) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&l.MaxConnectBytes, d.MaxConnectBytes)
	set(&l.MaxPending, d.MaxPending)
	set(&l.MaxPendingPerAddress, d.MaxPendingPerAddress)
	setf(&l.ConnectRate, d.ConnectRate)
	set(&l.ConnectBurst, d.ConnectBurst)
	set(&l.MaxUserProperties, d.MaxUserProperties)
	set(&l.MaxTopicBytes, d.MaxTopicBytes)
	setf(&l.UplinkRate, d.UplinkRate)
	set(&l.UplinkBurst, d.UplinkBurst)
	set(&l.UplinkBytes, d.UplinkBytes)
	setf(&l.RefusalLogRate, d.RefusalLogRate)
	set(&l.RefusalLogBurst, d.RefusalLogBurst)
	// A single publish must fit the byte budget's bucket.
	l.UplinkBytes = max(l.UplinkBytes, MaxPayload)
	return l
}

// limitsHook refuses what IoTDA does not support or the limits forbid:
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
//   - publishes over the connection's uplink budget, with a topic longer
//     than MaxTopicBytes or more than MaxUserProperties user properties
//     (OnPublish, which runs before every other publish hook): refused
//     as Limits.UplinkRate says, with reason codes 0x97 quota exceeded,
//     0x90 topic name invalid and 0x83 implementation specific error.
type limitsHook struct {
	mochi.HookBase
	limits Limits
	conns  *conns
	logs   *refusalLog
	stats  *counters
	log    *slog.Logger
}

func (h *limitsHook) ID() string { return "iotgate-limits" }

func (h *limitsHook) Provides(b byte) bool {
	return b == mochi.OnConnect || b == mochi.OnPacketRead || b == mochi.OnPublish
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
	h.stats.limitedPublishes.Add(1)
	h.logs.refused("publish refused; closing the connection", "device", cl.ID, "remote", cl.Net.Remote,
		"topic", truncate(pk.TopicName), "qos", pk.FixedHeader.Qos, "bytes", len(pk.Payload), "reason", code.Reason)
	if cl.Properties.ProtocolVersion == 5 {
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ReasonCode: code.Code})
	}
	// Only ErrRejectPacket makes mochi end the read loop.
	return pk, packets.ErrRejectPacket
}

// errUplinkLimit ends an MQTT 3.1.1 connection over its limits.
var errUplinkLimit = packets.ErrQuotaExceeded

func (h *limitsHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	var code packets.Code
	switch {
	case len(pk.TopicName) > h.limits.MaxTopicBytes:
		code = packets.ErrTopicNameInvalid
	case len(pk.Properties.User) > h.limits.MaxUserProperties:
		code = packets.ErrImplementationSpecificError
	default:
		c := h.conns.get(cl)
		if c == nil || c.budget(h.limits).allow(len(pk.Payload)) {
			return pk, nil
		}
		code = packets.ErrQuotaExceeded
	}
	h.stats.limitedPublishes.Add(1)
	v5 := cl.Properties.ProtocolVersion == 5
	h.logs.refused("publish refused", "device", cl.ID, "remote", cl.Net.Remote, "topic", truncate(pk.TopicName),
		"bytes", len(pk.Payload), "user_properties", len(pk.Properties.User), "reason", code.Reason,
		"connection_closed", !v5)
	switch {
	case !v5:
		cl.Stop(errUplinkLimit)
	case pk.FixedHeader.Qos > 0:
		_ = cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback},
			PacketID: pk.PacketID, ReasonCode: code.Code})
	}
	// ErrRejectPacket: mochi neither acknowledges nor routes it (and,
	// unlike other errors, does not log it at Error level).
	return pk, packets.ErrRejectPacket
}

// truncate shortens a client-chosen string for a log line.
func truncate(s string) string {
	const n = 128
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// uplinkBudget is a connection's publish budget: messages and bytes a
// second. It is made on the connection's first publish, so an idle
// device costs nothing for it.
type uplinkBudget struct {
	messages, bytes *rate.Limiter
}

func (b *uplinkBudget) allow(n int) bool {
	// Checked in this order so a refused message spends no bytes.
	return b.messages.Allow() && b.bytes.AllowN(time.Now(), n)
}

// budget returns the connection's uplink budget, making it if need be.
func (c *conn) budget(l Limits) *uplinkBudget {
	c.budgetOnce.Do(func() {
		c.uplink = &uplinkBudget{
			messages: rate.NewLimiter(rate.Limit(l.UplinkRate), l.UplinkBurst),
			bytes:    rate.NewLimiter(rate.Limit(l.UplinkBytes), l.UplinkBytes),
		}
	})
	return c.uplink
}
