package mqtt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/alisign"
)

// gatewayRegistry is what gateway requests need from the registry.
type gatewayRegistry interface {
	DeviceByProductNode(ctx context.Context, productID, nodeID string) (*registry.Device, error)
	RegisterSubDevices(ctx context.Context, gatewayID string, subs []registry.ProductNode) ([]*registry.Device, error)
	AttachSubDevices(ctx context.Context, gatewayID string, subs []registry.ProductNode) ([]*registry.Device, error)
	SubDevicesOf(ctx context.Context, gatewayID string) ([]*registry.Device, error)
	DetachSubDevices(ctx context.Context, gatewayID string, subs []registry.ProductNode) ([]*registry.Device, error)
	statusRegistry
}

// maxBatchLogin bounds a batch login or logout (reference §5.3).
const maxBatchLogin = 50

// gatewayHook serves the requests of an Alibaba gateway (a device of a
// GATEWAY product, reference §5), each answered on its _reply topic:
//
//	/sys/{pk}/{dn}/thing/sub/register           secrets of pre-registered sub-devices
//	/sys/{pk}/{dn}/thing/topo/add               attach sub-devices (each signs)
//	/sys/{pk}/{dn}/thing/topo/get, topo/delete  list, detach them (alitopo.go)
//	/ext/session/{pk}/{dn}/combine/login        log a sub-device in (signs)
//	/ext/session/{pk}/{dn}/combine/batch_login  log up to 50 in, all or none
//	/ext/session/{pk}/{dn}/combine/logout       log a sub-device out
//	/ext/session/{pk}/{dn}/combine/batch_logout log up to 50 out, all or none
//
// A logged-in sub-device is ONLINE; the gateway may then use its /sys/
// and /user/ topics (see conn.resolve), and its session ends with the
// logout, the gateway's disconnection, or when the sub-device is frozen
// or deleted (Server.Kick). A sub-device signs with its own DeviceSecret
// over clientId, deviceName, productKey and timestamp (cleanSession is
// not signed; the SDKs do not sign it), sign methods in any case.
// Other publishes pass on to uplinkHook.
type gatewayHook struct {
	mochi.HookBase
	reg   gatewayRegistry
	conns *conns
	log   *slog.Logger
	ctx   context.Context // ends at shutdown
}

func (h *gatewayHook) ID() string { return "iotgate-gateway" }

func (h *gatewayHook) Provides(b byte) bool { return b == mochi.OnPublish }

func (h *gatewayHook) OnPublish(cl *mochi.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	c := h.conns.get(cl)
	if c == nil {
		return pk, nil
	}
	r, kind, _ := c.mayPublish(pk.TopicName)
	var serve func(*conn, alinkRequest) alinkAnswer
	switch kind {
	case uplinkSubRegister:
		serve = h.subRegister
	case uplinkTopoAdd:
		serve = h.topoAdd
	case uplinkTopoGet:
		serve = h.topoGet
	case uplinkTopoDelete:
		serve = h.topoDelete
	case uplinkLogin:
		serve = h.login
	case uplinkBatchLogin:
		serve = h.batchLogin
	case uplinkLogout:
		serve = h.logout
	case uplinkBatchLogout:
		serve = h.batchLogout
	default:
		return pk, nil
	}
	req, err := parseAlinkRequest(pk.Payload)
	var a alinkAnswer
	switch {
	case err != nil:
		a = alinkError(aliBadParams, err.Error())
	case !c.gateway || r.device != c.device:
		a = alinkError(aliBadParams, fmt.Sprintf("device %s/%s is not a gateway", r.owner.a, r.owner.b))
	default:
		a = serve(c, req)
	}
	if a.code != aliOK {
		h.log.Info("gateway request refused", "gateway", c.device, "kind", kind, "code", a.code, "reason", a.message)
	}
	if req.wantsReply() {
		if err := writeAlinkReply(cl, replyTopic(pk.TopicName), req, a); err != nil {
			h.log.Debug("alink reply not written", "gateway", c.device, "topic", pk.TopicName, "err", err)
		}
	}
	return pk, packets.CodeSuccessIgnore
}

// subName is a sub-device as requests name it.
type subName struct {
	ProductKey string `json:"productKey"`
	DeviceName string `json:"deviceName"`
}

func (s subName) node() registry.ProductNode {
	return registry.ProductNode{ProductID: s.ProductKey, NodeID: s.DeviceName}
}

func (s subName) owner() owner { return owner{a: s.ProductKey, b: s.DeviceName} }

// subSign is a sub-device's proof in thing.topo.add and combine.login.
// encoding/json matches keys in any case, so "signmethod" (topo add in
// Alibaba's documents) and "signMethod" (the SDKs) both fill SignMethod.
type subSign struct {
	subName
	ClientID   *jsonText `json:"clientId"`
	Timestamp  *jsonText `json:"timestamp"`
	SignMethod string    `json:"signMethod"`
	Sign       string    `json:"sign"`
}

// refusalOf is an error answer, for helpers that return nil when all is well.
func refusalOf(code int, format string, a ...any) *alinkAnswer {
	ans := alinkError(code, fmt.Sprintf(format, a...))
	return &ans
}

func badParams(format string, a ...any) alinkAnswer {
	return alinkError(aliBadParams, fmt.Sprintf(format, a...))
}

// verify checks a sub-device's sign against its DeviceSecret and returns
// the sub-device; a device of another project does not exist for this
// gateway. method is the batch's sign method for entries without one.
func (h *gatewayHook) verify(c *conn, s subSign, method string, wrongSign int) (*registry.Device, *alinkAnswer) {
	if s.ProductKey == "" || s.DeviceName == "" || s.Sign == "" {
		return nil, refusalOf(aliBadParams, "a sub-device needs productKey, deviceName and sign")
	}
	if s.SignMethod != "" {
		method = s.SignMethod
	}
	hash, ok := alisign.Method(method)
	if !ok {
		return nil, refusalOf(aliBadParams, "sign method %q is not supported (hmacMd5, hmacSha1, hmacSha256)", method)
	}
	d, err := h.reg.DeviceByProductNode(h.ctx, s.ProductKey, s.DeviceName)
	if errors.Is(err, registry.ErrNotFound) || err == nil && d.ProjectID != c.project {
		return nil, refusalOf(aliDeviceAbsent, "sub-device %s/%s does not exist", s.ProductKey, s.DeviceName)
	}
	if err != nil {
		h.log.Error("sub-device lookup failed", "err", err)
		return nil, refusalOf(aliSystemError, "system error")
	}
	params := []alisign.Param{{Name: "deviceName", Value: s.DeviceName}, {Name: "productKey", Value: s.ProductKey}}
	if s.ClientID != nil {
		params = append(params, alisign.Param{Name: "clientId", Value: string(*s.ClientID)})
	}
	if s.Timestamp != nil {
		params = append(params, alisign.Param{Name: "timestamp", Value: string(*s.Timestamp)})
	}
	mac, ok := alisign.Decode(s.Sign, hash)
	if ok {
		_, ok = d.MatchSecret(alisign.Proof(hash, params...), mac)
	}
	if !ok {
		return nil, refusalOf(wrongSign, "sign check failed for sub-device %s/%s", s.ProductKey, s.DeviceName)
	}
	return d, nil
}

// subDeviceError maps a registry refusal of a sub-device request.
func (h *gatewayHook) subDeviceError(err error, frozen, quota int) alinkAnswer {
	var verr *registry.ValidationError
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return alinkError(aliDeviceAbsent, err.Error())
	case errors.Is(err, registry.ErrGatewayItself):
		return alinkError(aliSelf, err.Error())
	case errors.Is(err, registry.ErrOtherGateway):
		return alinkError(aliOtherGateway, err.Error())
	case errors.Is(err, registry.ErrFrozen):
		return alinkError(frozen, err.Error())
	case errors.Is(err, registry.ErrDynRegDisabled):
		return alinkError(aliDynRegOff, err.Error())
	case errors.Is(err, registry.ErrAlreadyActive):
		return alinkError(aliAlreadyActive, err.Error())
	case errors.Is(err, registry.ErrQuota):
		return alinkError(quota, err.Error())
	case errors.As(err, &verr), errors.Is(err, registry.ErrNotGateway):
		return alinkError(aliBadParams, err.Error())
	}
	h.log.Error("sub-device request failed", "err", err)
	return alinkError(aliSystemError, "system error")
}

// subRegister serves thing.sub.register: [{productKey, deviceName}] →
// [{iotId, productKey, deviceName, deviceSecret}].
func (h *gatewayHook) subRegister(c *conn, req alinkRequest) alinkAnswer {
	var subs []subName
	if err := json.Unmarshal(req.Params, &subs); err != nil {
		return badParams(`"params" is not an array of {productKey, deviceName}`)
	}
	nodes := make([]registry.ProductNode, len(subs))
	for i, s := range subs {
		if s.ProductKey == "" || s.DeviceName == "" {
			return badParams("a sub-device needs productKey and deviceName")
		}
		nodes[i] = s.node()
	}
	devs, err := h.reg.RegisterSubDevices(h.ctx, c.device, nodes)
	if err != nil {
		return h.subDeviceError(err, aliDisabled, aliBadParams)
	}
	type registered struct {
		IotID        string `json:"iotId"`
		ProductKey   string `json:"productKey"`
		DeviceName   string `json:"deviceName"`
		DeviceSecret string `json:"deviceSecret"`
	}
	out := make([]registered, len(devs))
	for i, d := range devs {
		out[i] = registered{IotID: d.DeviceID, ProductKey: d.ProductID, DeviceName: d.NodeID, DeviceSecret: d.Auth.Secret}
	}
	h.log.Info("sub-devices registered through their gateway", "gateway", c.device, "count", len(out))
	return alinkOK(out)
}

// topoAdd serves thing.topo.add: every sub-device's sign is checked
// before any is attached.
func (h *gatewayHook) topoAdd(c *conn, req alinkRequest) alinkAnswer {
	var subs []subSign
	if err := json.Unmarshal(req.Params, &subs); err != nil {
		return badParams(`"params" is not an array of signed sub-devices`)
	}
	if len(subs) == 0 {
		return badParams(`"params" names no sub-device`)
	}
	nodes := make([]registry.ProductNode, len(subs))
	for i, s := range subs {
		if _, a := h.verify(c, s, "", aliUnauthorized); a != nil {
			return *a
		}
		nodes[i] = s.node()
	}
	if _, err := h.reg.AttachSubDevices(h.ctx, c.device, nodes); err != nil {
		return h.subDeviceError(err, aliDisabled, aliTooManySubs)
	}
	out := make([]subName, len(subs))
	for i, s := range subs {
		out[i] = s.subName
	}
	h.log.Info("sub-devices attached to their gateway", "gateway", c.device, "count", len(out))
	return alinkOK(out)
}

// checkLogin verifies one sub-device login: its sign, and that it is
// attached to this gateway and not frozen.
func (h *gatewayHook) checkLogin(c *conn, s subSign, method string) (*registry.Device, *alinkAnswer) {
	d, a := h.verify(c, s, method, aliInvalidSign)
	if a != nil {
		return nil, a
	}
	if d.GatewayID != c.device {
		return nil, refusalOf(aliNoTopo, "sub-device %s/%s is not attached to this gateway", s.ProductKey, s.DeviceName)
	}
	if d.Frozen {
		return nil, refusalOf(aliSubDisabled, "sub-device %s/%s is disabled", s.ProductKey, s.DeviceName)
	}
	return d, nil
}

// connect starts the sessions of verified sub-devices, all or none.
func (h *gatewayHook) connect(c *conn, subs []subSign, devs []*registry.Device) *alinkAnswer {
	sessions := make([]registry.Session, len(devs))
	for i, d := range devs {
		s, err := h.reg.Connected(h.ctx, d.DeviceID)
		if err != nil {
			for j := range i {
				h.reg.Disconnected(devs[j].DeviceID, sessions[j])
			}
			switch {
			case errors.Is(err, registry.ErrFrozen):
				return refusalOf(aliSubDisabled, "sub-device %s is disabled", d.DeviceID)
			case errors.Is(err, registry.ErrNotFound):
				return refusalOf(aliSubDeleted, "sub-device %s was deleted", d.DeviceID)
			}
			h.log.Error("sub-device session not recorded", "device", d.DeviceID, "err", err)
			return refusalOf(aliSystemError, "system error")
		}
		sessions[i] = s
	}
	for i, d := range devs {
		old, replaced, ok := h.conns.login(c, subs[i].owner(), subSession{device: d.DeviceID, session: sessions[i]})
		if !ok { // the gateway is gone: so are its sub-devices
			h.reg.Disconnected(d.DeviceID, sessions[i])
			continue
		}
		if replaced {
			h.reg.Disconnected(old.device, old.session)
		}
		h.log.Debug("sub-device logged in through its gateway", "device", d.DeviceID, "gateway", c.device)
	}
	return nil
}

// login serves combine.login: {productKey, deviceName, clientId,
// timestamp, signMethod, sign, cleanSession} → {productKey, deviceName}.
func (h *gatewayHook) login(c *conn, req alinkRequest) alinkAnswer {
	var s subSign
	if err := json.Unmarshal(req.Params, &s); err != nil {
		return badParams(`"params" is not a signed sub-device`)
	}
	d, a := h.checkLogin(c, s, "")
	if a != nil {
		return *a
	}
	if a := h.connect(c, []subSign{s}, []*registry.Device{d}); a != nil {
		return *a
	}
	return alinkOK(s.subName)
}

// batchLogin serves combine.batch_login: {signMethod, deviceList: [...]}
// → [{productKey, deviceName}], all or none.
func (h *gatewayHook) batchLogin(c *conn, req alinkRequest) alinkAnswer {
	var p struct {
		SignMethod string    `json:"signMethod"`
		DeviceList []subSign `json:"deviceList"`
	}
	if err := json.Unmarshal(req.Params, &p); err != nil {
		return badParams(`"params" is not {signMethod, deviceList}`)
	}
	if n := len(p.DeviceList); n == 0 || n > maxBatchLogin {
		return badParams("a batch login names 1 to %d sub-devices, not %d", maxBatchLogin, n)
	}
	devs := make([]*registry.Device, len(p.DeviceList))
	seen := map[owner]bool{}
	for i, s := range p.DeviceList {
		if seen[s.owner()] {
			return badParams("sub-device %s/%s is named twice", s.ProductKey, s.DeviceName)
		}
		seen[s.owner()] = true
		d, a := h.checkLogin(c, s, p.SignMethod)
		if a != nil {
			return *a
		}
		devs[i] = d
	}
	if a := h.connect(c, p.DeviceList, devs); a != nil {
		return *a
	}
	out := make([]subName, len(p.DeviceList))
	for i, s := range p.DeviceList {
		out[i] = s.subName
	}
	return alinkOK(out)
}

// logout serves combine.logout: {productKey, deviceName}.
func (h *gatewayHook) logout(c *conn, req alinkRequest) alinkAnswer {
	var s subName
	if err := json.Unmarshal(req.Params, &s); err != nil || s.ProductKey == "" || s.DeviceName == "" {
		return badParams(`"params" is not {productKey, deviceName}`)
	}
	if a := h.disconnect(c, []subName{s}); a != nil {
		return *a
	}
	return alinkOK(s)
}

// batchLogout serves combine.batch_logout: [{productKey, deviceName}],
// all or none.
func (h *gatewayHook) batchLogout(c *conn, req alinkRequest) alinkAnswer {
	var subs []subName
	if err := json.Unmarshal(req.Params, &subs); err != nil {
		return badParams(`"params" is not an array of {productKey, deviceName}`)
	}
	if n := len(subs); n == 0 || n > maxBatchLogin {
		return badParams("a batch logout names 1 to %d sub-devices, not %d", maxBatchLogin, n)
	}
	if a := h.disconnect(c, subs); a != nil {
		return *a
	}
	return alinkOK(subs)
}

// disconnect ends the sessions of logged-in sub-devices, all or none
// (520 if one is not logged in through this gateway).
func (h *gatewayHook) disconnect(c *conn, subs []subName) *alinkAnswer {
	seen := map[owner]bool{}
	for _, s := range subs {
		if s.ProductKey == "" || s.DeviceName == "" {
			return refusalOf(aliBadParams, "a sub-device needs productKey and deviceName")
		}
		if seen[s.owner()] {
			return refusalOf(aliBadParams, "sub-device %s/%s is named twice", s.ProductKey, s.DeviceName)
		}
		seen[s.owner()] = true
		if _, ok := c.sub(s.owner()); !ok {
			return refusalOf(aliNoSession, "sub-device %s/%s is not logged in through this gateway", s.ProductKey, s.DeviceName)
		}
	}
	for _, s := range subs {
		if sess, ok := h.conns.logout(c, s.owner()); ok {
			h.reg.Disconnected(sess.device, sess.session)
			h.log.Debug("sub-device logged out through its gateway", "device", sess.device, "gateway", c.device)
		}
	}
	return nil
}
