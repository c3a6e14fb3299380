package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
)

// IotTokenChecker checks the iotToken an activation centre's pre-auth
// gave a device (registry/regions.Tokens implements it with the region's
// key).
type IotTokenChecker interface {
	Check(d *registry.Device, token string, now time.Time) error
}

// aliIotToken authenticates a securemode=-1 CONNECT (reference
// activation.md): after POST /auth/devicename at the activation centre
// the device connects with username iotId (its device id) and password
// iotToken; the clientId part is free text (iotkit sends pk.dn) and not
// checked. Any refusal of the token, unknown iotId included, is CONNACK
// 3 as on Alibaba: iotkit then runs its pre-auth again.
func (h *authHook) aliIotToken(ctx context.Context, cl *mochi.Client, pk packets.Packet) (*conn, *refusal) {
	if h.iotTokens == nil {
		return nil, refuse(identifierRejected, "securemode -1 (activation centre token) is not enabled on this node")
	}
	if r := checkKeepalive(pk); r != nil {
		return nil, r
	}
	iotID, token := string(pk.Connect.Username), string(pk.Connect.Password)
	if iotID == "" || token == "" {
		return nil, refuse(serverUnavailable, "securemode -1 needs iotId as username and iotToken as password")
	}
	h.stats.credentialChecks.Add(1)
	d, err := h.reg.Device(ctx, iotID)
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, reject(serverUnavailable, failedUnknownDevice, "unknown iotId")
	case err != nil:
		return nil, refuse(serverUnavailable, "device lookup: %v", err)
	}
	if err := h.iotTokens.Check(d, token, h.now()); err != nil {
		return nil, reject(serverUnavailable, failedBadSecret, "iotToken refused: %v", err)
	}
	return h.aliSession(ctx, d, tlsState(cl) != nil)
}

// NotifyBootstrap tells the device, which must be connected here, to
// bootstrap again: Alibaba's thing.bootstrap.notify on
// /sys/{pk}/{dn}/thing/bootstrap/notify (regions.Notifier). The device
// answers on .../notify_reply, which its ACL lets it publish.
func (s *Server) NotifyBootstrap(ctx context.Context, d *registry.Device) error {
	payload, err := json.Marshal(map[string]any{"id": strconv.FormatInt(s.notifyIDs.Add(1), 10), "version": "1.0",
		"method": "thing.bootstrap.notify", "params": map[string]int{"cmd": 0}})
	if err != nil {
		return err
	}
	return s.deliver(ctx, d.DeviceID, "/sys/"+d.ProductID+"/"+d.NodeID+"/thing/bootstrap/notify", payload)
}

// PushBootstrapConfig sends the device, which must be connected here,
// its new endpoint and the credentials to connect there with: Alibaba's
// thing.bootstrap.config.push on /sys/{pk}/{dn}/thing/bootstrap/config/push
// (regions.ConfigPusher), in the shape iotkit's redirect-region handler
// reads (id, params.iotId, params.endpoint.mqtt.host, .port and .token:
// it then connects there with username iotId and password token). The
// device may answer on .../push_reply, which its ACL lets it publish.
func (s *Server) PushBootstrapConfig(ctx context.Context, d *registry.Device, iotID, iotToken, host string, port int) error {
	payload, err := json.Marshal(map[string]any{"id": strconv.FormatInt(s.notifyIDs.Add(1), 10), "version": "1.0",
		"method": "thing.bootstrap.config.push", "params": map[string]any{"iotId": iotID,
			"endpoint": map[string]any{"mqtt": map[string]any{"host": host, "port": port, "token": iotToken}}}})
	if err != nil {
		return err
	}
	return s.deliver(ctx, d.DeviceID, "/sys/"+d.ProductID+"/"+d.NodeID+"/thing/bootstrap/config/push", payload)
}
