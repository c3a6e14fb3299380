package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// uplinkRegistry is what uplink handling needs from the registry.
type uplinkRegistry interface {
	AddMessage(ctx context.Context, deviceID string, m registry.Message) error
	ReportProperties(ctx context.Context, deviceID string, reports []registry.ServiceProperties) error
	ShadowOf(ctx context.Context, deviceID string) (*registry.Shadow, error)
}

// uplinkHook consumes what devices publish: the platform, not other
// clients, is the receiver of every device topic. Property reports update
// the shadow (IoTDA sys/properties/report; Alibaba
// thing/event/property/post, mapped as alink.go says, and answered on its
// _reply topic), messages (IoTDA sys/messages/up, custom user/ topics of
// both dialects) are kept per device, command and property get/set
// responses complete the waiting request, shadow gets are answered
// (shadow.go). A gateway's publishes on a logged-in sub-device's topics
// count as that sub-device's. Other uplinks the ACL admits (events, other
// Alink topics) are acknowledged and discarded: nothing consumes them
// yet.
// Gateway requests are gatewayHook's.
//
// Each publish is then marked to be ignored by mochi: acknowledged per
// its QoS but never routed or retained, so no device ever receives
// another's (or its own) uplink. The registry write runs on the device's
// read goroutine, which applies natural back-pressure per connection.
type uplinkHook struct {
	mochi.HookBase
	reg       uplinkRegistry
	conns     *conns
	responses *pendingCommands
	log       *slog.Logger
	ctx       context.Context // ends at shutdown

	rejected atomic.Uint64
}

func (h *uplinkHook) ID() string { return "iotgate-uplink" }

func (h *uplinkHook) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *uplinkHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil // the platform's own downlink: route it
	}
	c := h.conns.get(cl)
	if c == nil {
		return pk, packets.CodeSuccessIgnore // the ACL refused it already
	}
	r, kind, _ := c.mayPublish(pk.TopicName) // the ACL has admitted it
	var err error
	switch kind {
	case uplinkProperties:
		err = h.reportProperties(r.device, pk.Payload)
	case uplinkMessage, uplinkUser:
		err = h.reg.AddMessage(h.ctx, r.device, registry.Message{Topic: pk.TopicName, Payload: pk.Payload})
	case uplinkCommandResponse, uplinkPropertiesSetResponse, uplinkPropertiesGetResponse:
		reqID := requestID(r.suffix)
		if !h.responses.resolve(kind, r.device, reqID, pk.Payload) {
			h.log.Info("response for no waiting request (late or unknown)", "device", r.device, "kind", kind, "request_id", reqID)
		}
	case uplinkShadowGet:
		err = h.shadowGet(cl, r.device, r.suffix, pk.Payload)
	case uplinkAlinkProperties:
		err = h.postProperties(cl, r.device, pk)
	case uplinkAlinkSetReply, uplinkAlinkServiceReply, uplinkRRPCResponse:
		err = h.alinkResponse(kind, r, pk.Payload)
	default:
		h.log.Debug("uplink discarded: nothing consumes it", "device", r.device, "kind", kind, "topic", pk.TopicName)
	}
	if err != nil {
		h.rejected.Add(1)
		h.log.Info("uplink rejected", "device", r.device, "kind", kind, "topic", pk.TopicName, "err", err)
	}
	return pk, packets.CodeSuccessIgnore
}

// propertiesReport is the body of sys/properties/report.
type propertiesReport struct {
	Services []struct {
		ServiceID  string                     `json:"service_id"`
		Properties map[string]json.RawMessage `json:"properties"`
		EventTime  string                     `json:"event_time"`
	} `json:"services"`
}

// eventTimeLayout is IoTDA's yyyyMMdd'T'HHmmss'Z'.
const eventTimeLayout = "20060102T150405Z"

func (h *uplinkHook) reportProperties(deviceID string, payload []byte) error {
	var rep propertiesReport
	if err := json.Unmarshal(payload, &rep); err != nil {
		return fmt.Errorf("properties report is not JSON: %w", err)
	}
	if len(rep.Services) == 0 {
		return errors.New(`properties report has no "services"`)
	}
	out := make([]registry.ServiceProperties, len(rep.Services))
	for i, s := range rep.Services {
		out[i] = registry.ServiceProperties{ServiceID: s.ServiceID, Properties: s.Properties}
		if s.EventTime != "" {
			t, err := time.Parse(eventTimeLayout, s.EventTime)
			if err != nil {
				return fmt.Errorf("service %q: event_time %q is not yyyyMMddTHHmmssZ", s.ServiceID, s.EventTime)
			}
			out[i].EventTime = t
		}
	}
	return h.reg.ReportProperties(h.ctx, deviceID, out)
}

// postProperties stores an Alink property post in the shadow and answers
// it on its _reply topic (unless the request asked for no reply): 200, or
// 460 for a body that does not map.
func (h *uplinkHook) postProperties(cl *mochi.Client, deviceID string, pk packets.Packet) error {
	req, err := parseAlinkRequest(pk.Payload)
	if err != nil {
		h.reply(cl, pk.TopicName, alinkRequest{}, alinkError(aliBadParams, err.Error()))
		return err
	}
	reports, err := alinkProperties(req.Params)
	if err == nil {
		err = h.reg.ReportProperties(h.ctx, deviceID, reports)
	}
	var verr *registry.ValidationError
	switch {
	case err == nil:
		h.reply(cl, pk.TopicName, req, alinkOK(struct{}{}))
	case errors.As(err, &verr), errors.Is(err, errAlinkParams):
		h.reply(cl, pk.TopicName, req, alinkError(aliBadParams, err.Error()))
	default:
		h.reply(cl, pk.TopicName, req, alinkError(aliSystemError, "system error"))
	}
	return err
}

func (h *uplinkHook) reply(cl *mochi.Client, topic string, req alinkRequest, a alinkAnswer) {
	if !req.wantsReply() {
		return
	}
	if err := writeAlinkReply(cl, replyTopic(topic), req, a); err != nil {
		h.log.Debug("alink reply not written", "client", cl.ID, "topic", topic, "err", err)
	}
}
