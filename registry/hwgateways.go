package registry

import (
	"context"
	"encoding/json"
)

// Gateways in Huawei IoTDA's style: a device of a GATEWAY product adds and
// deletes its sub-devices itself (the $sub_device_manager events of its
// MQTT connection), reports their status and properties, and carries their
// commands. A sub-device added this way is the same kind of device as one
// created over REST with a gateway_id or attached by an Alibaba gateway:
// one gateway relation, one quota (Quotas.SubDevicesPerGateway).

// NewSubDevice is what a gateway supplies to add a sub-device (IoTDA's
// add_sub_device_request DeviceInfo).
type NewSubDevice struct {
	NodeID        string
	DeviceID      string // empty: "{product_id}_{node_id}"
	ProductID     string
	Name          string
	Description   string
	ExtensionInfo json.RawMessage
}

// AddSubDevice creates a sub-device of a gateway, in the gateway's project
// and attached to it, as CreateDevice does for a device created over REST
// with that gateway_id (same validation, uniqueness, nesting depth and
// quota; it is written whole or not at all). The sub-device has a
// generated secret it never needs: it speaks through its gateway.
// ErrNotGateway when the gateway's product is not a GATEWAY product; a
// product of another project does not exist (*NotFoundError).
func (r *Registry) AddSubDevice(ctx context.Context, gatewayID string, n NewSubDevice) (*Device, error) {
	var gw *Device
	if err := r.view(ctx, func(rd Reader) error {
		var err error
		gw, err = r.gatewayOf(rd, gatewayID)
		return err
	}); err != nil {
		return nil, err
	}
	return r.CreateDevice(ctx, NewDevice{ProjectID: gw.ProjectID, GatewayID: gatewayID, DeviceID: n.DeviceID,
		NodeID: n.NodeID, ProductID: n.ProductID, DeviceName: n.Name, Description: n.Description,
		ExtensionInfo: n.ExtensionInfo})
}

// SubDeviceOf returns a sub-device of the gateway. A device not attached
// to this gateway (another gateway's, a directly connected one, one of
// another project, one that does not exist) is a *NotFoundError: a
// gateway learns nothing of devices that are not its own.
func (r *Registry) SubDeviceOf(ctx context.Context, gatewayID, id string) (*Device, error) {
	d, err := r.Device(ctx, id)
	if err == nil && d.GatewayID != gatewayID {
		return nil, &NotFoundError{Kind: EntityDevice, ID: id}
	}
	return d, err
}

// DeleteSubDevice deletes a sub-device of the gateway as DeleteDevice
// does (its session ends, wherever it is). Refusals are SubDeviceOf's, or
// a *ValidationError for a sub-device with sub-devices of its own.
func (r *Registry) DeleteSubDevice(ctx context.Context, gatewayID, id string) error {
	return r.deleteDeviceIf(ctx, id, func(d *Device) error {
		if d.GatewayID != gatewayID {
			return &NotFoundError{Kind: EntityDevice, ID: id}
		}
		return nil
	})
}
