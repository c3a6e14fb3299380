package registry

import (
	"context"
	"errors"
)

// A gateway's topology as its own requests read and change it (Alibaba's
// thing.topo.get and thing.topo.delete); attaching is AttachSubDevices.

// ErrNotAttached: the device is not a sub-device of the gateway that
// named it.
var ErrNotAttached = errors.New("sub-device is not attached to this gateway")

// SubDevicesOf lists a gateway's sub-devices, oldest first (at most
// Quotas.SubDevicesPerGateway of them). ErrNotGateway when the device's
// product is not a GATEWAY product.
func (r *Registry) SubDevicesOf(ctx context.Context, gatewayID string) ([]*Device, error) {
	var out []*Device
	err := r.view(ctx, func(rd Reader) error {
		if _, err := r.gatewayOf(rd, gatewayID); err != nil {
			return err
		}
		return rd.Scan(gatewayDevicesPrefix(gatewayID), nil, false, func(_, v []byte) (bool, error) {
			d, err := r.getDevice(rd, string(v))
			if errors.Is(err, ErrNotFound) {
				return true, nil // deleted: its index entry goes with it
			}
			if err != nil {
				return false, err
			}
			out = append(out, d)
			return true, nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DetachSubDevices makes sub-devices of a gateway directly connected
// devices again: their gateway_id is cleared, and they no longer count
// against the gateway's quota. Each must be attached to this gateway (a
// *SubDeviceError wrapping ErrNotAttached, or not found, otherwise); it
// is all or nothing. The devices come back in request order.
func (r *Registry) DetachSubDevices(ctx context.Context, gatewayID string, subs []ProductNode) ([]*Device, error) {
	if len(subs) == 0 {
		return nil, invalid("params", "names no sub-device")
	}
	out := make([]*Device, len(subs))
	err := r.write(ctx, func(w Writer) error {
		gw, err := r.gatewayOf(w, gatewayID)
		if err != nil {
			return err
		}
		for i, sub := range subs {
			d, err := r.subDevice(w, gw, sub)
			if err != nil {
				return err
			}
			out[i] = d
			if d.GatewayID != gatewayID {
				return &SubDeviceError{Sub: sub, Err: ErrNotAttached}
			}
			old := *d
			d.GatewayID = ""
			if err := w.Delete(gatewayDeviceKey(gatewayID, d.Seq)); err != nil {
				return err
			}
			if err := r.putDevice(w, &old, d); err != nil {
				return err
			}
			if err := addCount(w, gatewayCountKey(gatewayID), -1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, d := range out {
		r.fillStatus(d)
	}
	return out, nil
}
