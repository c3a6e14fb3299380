package registry

import (
	"context"
	"errors"
	"fmt"

	"github.com/iotgate/iotgate/registry/kv"
)

// Gateways in Alibaba's style: a device of a GATEWAY product obtains the
// secrets of pre-registered sub-devices (sub-device dynamic registration)
// and attaches sub-devices to itself (topology add), after which it may
// log them in and speak for them. The relation is the same gateway_id a
// sub-device created through the REST API has, so both kinds appear under
// the same gateway and count against the same quota.

// Sub-device refusals; adapters map them to their protocol's codes.
var (
	// ErrNotGateway: the device's product is not a GATEWAY product.
	ErrNotGateway = errors.New("device is not a gateway")
	// ErrOtherGateway: the sub-device is attached to another gateway.
	ErrOtherGateway = errors.New("sub-device is attached to another gateway")
	// ErrGatewayItself: a gateway named itself as its sub-device.
	ErrGatewayItself = errors.New("a gateway cannot be its own sub-device")
)

// ProductNode names a device by product id and node id: Alibaba's
// ProductKey and DeviceName.
type ProductNode struct {
	ProductID string
	NodeID    string
}

func (pn ProductNode) String() string { return pn.ProductID + "/" + pn.NodeID }

// SubDeviceError says which sub-device of a request was refused, and why
// (Err: NotFoundError, ErrOtherGateway, ErrGatewayItself, ErrFrozen,
// ErrDynRegDisabled, ErrAlreadyActive, a ValidationError).
type SubDeviceError struct {
	Sub ProductNode
	Err error
}

func (e *SubDeviceError) Error() string { return fmt.Sprintf("sub-device %s: %v", e.Sub, e.Err) }

func (e *SubDeviceError) Unwrap() error { return e.Err }

// gatewayOf reads a gateway device and checks that its product is a
// GATEWAY product.
func (r *Registry) gatewayOf(w Reader, gatewayID string) (*Device, error) {
	gw, err := r.getDevice(w, gatewayID)
	if err != nil {
		return nil, err
	}
	p, err := getProduct(w, gw.ProductID)
	if err != nil {
		return nil, err
	}
	if p.NodeType != NodeGateway {
		return nil, fmt.Errorf("device %s of product %s (%s): %w", gatewayID, p.ProductID, p.NodeType, ErrNotGateway)
	}
	return gw, nil
}

// subDevice resolves a sub-device named by a gateway. A device of another
// project does not exist as far as the gateway is concerned.
func (r *Registry) subDevice(w Reader, gw *Device, sub ProductNode) (*Device, error) {
	notFound := &SubDeviceError{Sub: sub, Err: &NotFoundError{Kind: EntityDevice, ID: sub.String()}}
	id, err := w.Get(productNodeKey(sub.ProductID, sub.NodeID))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, notFound
	}
	if err != nil {
		return nil, err
	}
	d, err := r.getDevice(w, string(id))
	if err != nil {
		return nil, err
	}
	if d.ProjectID != gw.ProjectID {
		return nil, notFound
	}
	if d.DeviceID == gw.DeviceID {
		return nil, &SubDeviceError{Sub: sub, Err: ErrGatewayItself}
	}
	if d.GatewayID != "" && d.GatewayID != gw.DeviceID {
		return nil, &SubDeviceError{Sub: sub, Err: ErrOtherGateway}
	}
	return d, nil
}

// RegisterSubDevices hands a gateway the secrets of pre-registered
// sub-devices (Alibaba's thing.sub.register). Each sub-device must exist
// in the gateway's project, belong to a product with Dynamic Registration
// on, be attached to no other gateway and not have had its secret
// delivered yet (the rule of DynamicRegister: a secret goes to one
// physical device). At most Quotas.SubDevicesPerRequest per call. It is
// all or nothing: the deliveries are recorded in one durable write, and
// the first refusal (a *SubDeviceError naming the sub-device, or ErrQuota
// for too many in one request, or ErrNotGateway) leaves every device as
// it was. The devices come back in request order.
func (r *Registry) RegisterSubDevices(ctx context.Context, gatewayID string, subs []ProductNode) ([]*Device, error) {
	if len(subs) == 0 {
		return nil, invalid("params", "names no sub-device")
	}
	if len(subs) > r.quotas.SubDevicesPerRequest {
		return nil, fmt.Errorf("%d sub-devices in one request, at most %d: %w", len(subs), r.quotas.SubDevicesPerRequest, ErrQuota)
	}
	out := make([]*Device, len(subs))
	err := r.write(ctx, func(w Writer) error {
		gw, err := r.gatewayOf(w, gatewayID)
		if err != nil {
			return err
		}
		seen := make(map[ProductNode]bool, len(subs))
		for i, sub := range subs {
			if seen[sub] {
				return &SubDeviceError{Sub: sub, Err: invalid("params", "names %s twice", sub)}
			}
			seen[sub] = true
			d, err := r.subDevice(w, gw, sub)
			if err != nil {
				return err
			}
			p, err := getProduct(w, d.ProductID)
			if err != nil {
				return err
			}
			switch {
			case d.Frozen:
				return &SubDeviceError{Sub: sub, Err: ErrFrozen}
			case !p.DynamicRegistration:
				return &SubDeviceError{Sub: sub, Err: ErrDynRegDisabled}
			case !d.registrationOpen() || d.Auth.Type != AuthSecret:
				return &SubDeviceError{Sub: sub, Err: ErrAlreadyActive}
			}
			old := *d
			d.DynReg = "delivered"
			if err := r.putDevice(w, &old, d); err != nil {
				return err
			}
			out[i] = d
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

// AttachSubDevices makes devices sub-devices of a gateway (Alibaba's
// thing.topo.add): it sets their gateway_id, which the REST API shows.
// The caller has authenticated each sub-device (with its own secret).
// Devices already attached to this gateway are left as they are. A
// sub-device must not have sub-devices of its own, and the gateway must
// not itself be nested two levels deep (as for CreateDevice). It is all
// or nothing, within Quotas.SubDevicesPerGateway (ErrQuota).
func (r *Registry) AttachSubDevices(ctx context.Context, gatewayID string, subs []ProductNode) ([]*Device, error) {
	if len(subs) == 0 {
		return nil, invalid("params", "names no sub-device")
	}
	out := make([]*Device, len(subs))
	err := r.write(ctx, func(w Writer) error {
		gw, err := r.gatewayOf(w, gatewayID)
		if err != nil {
			return err
		}
		if gw.GatewayID != "" {
			if gg, err := r.getDevice(w, gw.GatewayID); err == nil && gg.GatewayID != "" {
				return invalid("gateway_id", "sub-devices may be nested at most two levels deep")
			}
		}
		n, err := readCount(w, gatewayCountKey(gatewayID))
		if err != nil {
			return err
		}
		added := 0
		for i, sub := range subs {
			d, err := r.subDevice(w, gw, sub)
			if err != nil {
				return err
			}
			out[i] = d
			if d.GatewayID == gatewayID {
				continue // attached already, maybe earlier in this request
			}
			if d.Frozen {
				return &SubDeviceError{Sub: sub, Err: ErrFrozen}
			}
			if err := w.Scan(gatewayDevicesPrefix(d.DeviceID), nil, false, func(_, _ []byte) (bool, error) {
				return false, &SubDeviceError{Sub: sub, Err: invalid("params", "%s has sub-devices of its own", sub)}
			}); err != nil {
				return err
			}
			if n+int64(added) >= r.quotas.SubDevicesPerGateway {
				return fmt.Errorf("gateway %s already has %d sub-devices, its quota: %w", gatewayID, n+int64(added), ErrQuota)
			}
			old := *d
			d.GatewayID = gatewayID
			if err := w.Set(gatewayDeviceKey(gatewayID, d.Seq), []byte(d.DeviceID)); err != nil {
				return err
			}
			if err := r.putDevice(w, &old, d); err != nil {
				return err
			}
			// In the sub-device's shard, which its delete counts down.
			if err := addCount(w, gatewayCountKey(gatewayID), 1); err != nil {
				return err
			}
			added++
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
