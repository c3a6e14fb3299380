package registry

import (
	"context"
	"errors"
	"fmt"
)

// SubDeviceChange is a change of a gateway's sub-devices: devices created
// with its gateway_id (over REST, by the gateway itself, by a bulk
// import) or, Deleted, devices of it that were deleted.
type SubDeviceChange struct {
	Deleted bool      `json:"deleted,omitempty"`
	Devices []*Device `json:"devices"`
}

// SubDeviceNotifier tells a gateway connected to this node of a change of
// its sub-devices (IoTDA: add_sub_device_notify, delete_sub_device_notify),
// so it can keep its list of them without asking. ErrNotConnected when it
// has no session here; a gateway whose protocol has no such notification
// is not told (nil).
type SubDeviceNotifier interface {
	NotifySubDevices(ctx context.Context, gatewayID string, c SubDeviceChange) error
}

// subDevicesChanged tells the gateway, wherever its session is, of a
// change of its sub-devices. It returns at once: a gateway with no
// session is not told (it asks when it connects), and the telling runs
// in its own goroutine, bounded by the router's send timeout, so the
// create or delete that caused it never waits on a gateway's connection.
func (rt *Router) subDevicesChanged(gatewayID string, c SubDeviceChange) {
	ctx, cancel := context.WithTimeout(context.Background(), rt.sendTimeout)
	place, node := rt.locate(ctx, gatewayID)
	if place == sessionNone {
		cancel()
		return
	}
	go func() {
		defer cancel()
		var err error
		switch place {
		case sessionLocal:
			err = rt.notifySubDevices(ctx, gatewayID, c)
		case sessionRemote:
			_, err = rt.call(ctx, node, nodeRequest{Kind: nodeSubDevices, Device: gatewayID, SubDevices: &c})
		}
		if err != nil && !errors.Is(err, ErrNotConnected) {
			rt.log.Warn("gateway not told of its sub-devices", "gateway_id", gatewayID, "deleted", c.Deleted,
				"devices", len(c.Devices), "err", err)
		}
	}()
}

// notifySubDevices hands a change to this node's MQTT adapter (gateways
// are MQTT devices).
func (rt *Router) notifySubDevices(ctx context.Context, gatewayID string, c SubDeviceChange) error {
	if place, _ := rt.locate(ctx, gatewayID); place != sessionLocal {
		return ErrNotConnected
	}
	n := rt.adapter(ProtocolMQTT).SubDevices
	if n == nil {
		return nil
	}
	if err := n.NotifySubDevices(ctx, gatewayID, c); err != nil {
		return fmt.Errorf("notify gateway %s: %w", gatewayID, err)
	}
	return nil
}
