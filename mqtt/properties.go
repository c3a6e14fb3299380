package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry"
)

// propertiesGet is what a device receives on
// sys/properties/get/request_id={id} (the Huawei device SDKs' PropsGet).
type propertiesGet struct {
	ObjectDeviceID string `json:"object_device_id"`
	ServiceID      string `json:"service_id,omitempty"`
}

// propertiesSet is what a device receives on
// sys/properties/set/request_id={id} (the SDKs' PropsSet).
type propertiesSet struct {
	ObjectDeviceID string          `json:"object_device_id"`
	Services       json.RawMessage `json:"services"`
}

// SendProperties asks a device for its properties
// ($oc/devices/{id}/sys/properties/get/request_id={id}) or to set them
// (.../sys/properties/set/request_id={id}) and waits, until ctx ends, for
// its answer on the matching .../response/request_id={id}. Errors are
// SendCommand's.
func (s *Server) SendProperties(ctx context.Context, d *registry.Device, p registry.PropertiesRequest) (json.RawMessage, error) {
	if p.RequestID == "" {
		return nil, errors.New("mqtt: properties request has no request_id")
	}
	if to, ok := s.alibabaTarget(d.DeviceID); ok {
		return s.aliProperties(ctx, to, d, p)
	}
	var (
		body []byte
		err  error
		kind uplink
	)
	switch p.Op {
	case registry.PropertiesGet:
		body, err = json.Marshal(propertiesGet{ObjectDeviceID: d.DeviceID, ServiceID: p.ServiceID})
		kind = uplinkPropertiesGetResponse
	case registry.PropertiesSet:
		body, err = json.Marshal(propertiesSet{ObjectDeviceID: d.DeviceID, Services: p.Services})
		kind = uplinkPropertiesSetResponse
	default:
		return nil, fmt.Errorf("mqtt: unknown properties operation %q", p.Op)
	}
	if err != nil {
		return nil, fmt.Errorf("mqtt: encode properties %s: %w", p.Op, err)
	}
	to := s.carrier(d.DeviceID) // a sub-device's: its gateway's topic
	return s.request(ctx, kind, to, p.RequestID, propertiesTopic(to, p.Op, p.RequestID), body)
}

// propertiesTopic is $oc/devices/{id}/sys/properties/get|set/request_id={id}.
func propertiesTopic(deviceID string, op registry.PropertiesOp, id string) string {
	return devicesPrefix + deviceID + "/sys/properties/" + string(op) + "/request_id=" + id
}
