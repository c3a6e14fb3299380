package mqtt

import (
	"encoding/json"
	"fmt"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/iotgate/iotgate/registry"
)

// A device asks for its shadow on sys/shadow/get/request_id={id} (body
// {"object_device_id", "service_id"?}) and gets it on
// sys/shadow/get/response/request_id={id}, in the Huawei device SDKs'
// Shadow shape: {"object_device_id", "shadow":[{"service_id", "desired":
// {"properties", "event_time"}, "reported": {...}, "version"}]}, only the
// service asked for when the request names one.

// shadowGetRequest is the body of sys/shadow/get/request_id={id}.
type shadowGetRequest struct {
	ObjectDeviceID string `json:"object_device_id"`
	ServiceID      string `json:"service_id"`
}

type shadowSection struct {
	Properties map[string]json.RawMessage `json:"properties"`
	EventTime  string                     `json:"event_time,omitempty"`
}

type shadowData struct {
	ServiceID string         `json:"service_id"`
	Desired   *shadowSection `json:"desired,omitempty"`
	Reported  *shadowSection `json:"reported,omitempty"`
	Version   int64          `json:"version"`
}

type shadowGetResponse struct {
	ObjectDeviceID string       `json:"object_device_id"`
	Shadow         []shadowData `json:"shadow"`
}

func eventTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(eventTimeLayout)
}

// shadowResponse builds the answer to a shadow get for sh.
func shadowResponse(sh *registry.Shadow, serviceID string) shadowGetResponse {
	out := shadowGetResponse{ObjectDeviceID: sh.DeviceID, Shadow: []shadowData{}}
	for _, s := range sh.Services {
		if serviceID != "" && s.ServiceID != serviceID {
			continue
		}
		d := shadowData{ServiceID: s.ServiceID, Version: s.Version}
		if len(s.Desired) > 0 {
			d.Desired = &shadowSection{Properties: s.Desired, EventTime: eventTime(s.DesiredTime)}
		}
		if s.Properties != nil {
			d.Reported = &shadowSection{Properties: s.Properties, EventTime: eventTime(s.EventTime)}
		}
		out.Shadow = append(out.Shadow, d)
	}
	return out
}

// shadowGet answers a device's shadow get on its response topic (QoS 0,
// as the other answers the platform writes on a device's read goroutine).
func (h *uplinkHook) shadowGet(cl *mochi.Client, deviceID, suffix string, payload []byte) error {
	var req shadowGetRequest
	if len(payload) > 0 {
		if err := json.Unmarshal(payload, &req); err != nil {
			return fmt.Errorf("shadow get request is not JSON: %w", err)
		}
	}
	sh, err := h.reg.ShadowOf(h.ctx, deviceID)
	if err != nil {
		return err
	}
	body, err := json.Marshal(shadowResponse(sh, req.ServiceID))
	if err != nil {
		return fmt.Errorf("encode shadow: %w", err)
	}
	topic := devicesPrefix + deviceID + "/sys/shadow/get/response/request_id=" + requestID(suffix)
	return writePublish(cl, topic, body)
}
