package mqtt

import (
	"encoding/json"
	"errors"

	"github.com/iotgate/iotgate/registry"
)

// An Alibaba gateway reads and changes its topology (reference §5;
// aliyun's Node SDK gateway.getTopo and removeTopo):
//
//	/sys/{pk}/{dn}/thing/topo/get     params {} → data [{productKey, deviceName}]
//	/sys/{pk}/{dn}/thing/topo/delete  params [{productKey, deviceName}] → the same,
//	                                  all or none; 6401 for one not attached
//	                                  to this gateway, 6100 for an unknown one
//
// A deleted sub-device logged in through the gateway is logged out: it
// is no longer the gateway's to speak for.

// topoGet serves thing.topo.get.
func (h *gatewayHook) topoGet(c *conn, _ alinkRequest) alinkAnswer {
	subs, err := h.reg.SubDevicesOf(h.ctx, c.device)
	if err != nil {
		return h.subDeviceError(err, aliDisabled, aliTooManySubs)
	}
	out := make([]subName, len(subs))
	for i, d := range subs {
		out[i] = subName{ProductKey: d.ProductID, DeviceName: d.NodeID}
	}
	return alinkOK(out)
}

// topoDelete serves thing.topo.delete.
func (h *gatewayHook) topoDelete(c *conn, req alinkRequest) alinkAnswer {
	var subs []subName
	if err := json.Unmarshal(req.Params, &subs); err != nil {
		return badParams(`"params" is not an array of {productKey, deviceName}`)
	}
	if len(subs) == 0 {
		return badParams(`"params" names no sub-device`)
	}
	nodes := make([]registry.ProductNode, len(subs))
	for i, s := range subs {
		if s.ProductKey == "" || s.DeviceName == "" {
			return badParams("a sub-device needs productKey and deviceName")
		}
		nodes[i] = s.node()
	}
	if _, err := h.reg.DetachSubDevices(h.ctx, c.device, nodes); err != nil {
		if errors.Is(err, registry.ErrNotAttached) {
			return alinkError(aliNoTopo, err.Error())
		}
		return h.subDeviceError(err, aliDisabled, aliTooManySubs)
	}
	for _, s := range subs {
		if sess, ok := h.conns.logout(c, s.owner()); ok {
			h.reg.Disconnected(sess.device, sess.session)
		}
	}
	h.log.Info("sub-devices detached from their gateway", "gateway", c.device, "count", len(subs))
	return alinkOK(subs)
}
