package mqtt

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/iotgate/iotgate/registry"
	"github.com/iotgate/iotgate/registry/alisign"
)

// aliAuthRegistry is what Alibaba authentication needs from the registry.
type aliAuthRegistry interface {
	ProductByID(ctx context.Context, id string) (*registry.Product, error)
	DeviceByProductNode(ctx context.Context, productID, nodeID string) (*registry.Device, error)
	DynamicRegister(ctx context.Context, productID, nodeID string, verify func(*registry.Product) bool) (*registry.Device, error)
	RegisterClientID(ctx context.Context, productID, nodeID string, verify func(*registry.Product) bool) (*registry.Device, registry.ClientID, error)
	CheckClientToken(ctx context.Context, productID, nodeID, clientID, token string) (*registry.Device, error)
}

// Alibaba CONNECTs (reference §1, §4, §8). ProductKey is the product id,
// DeviceName the node id. Which flow a CONNECT asks for is in its
// ClientId parameters:
//
//	authType=register|regnwl       dynamic registration by product secret
//	                               (securemode 2 or -2, MQTTS only)
//	securemode=-2 / authType=connwl  ClientID + DeviceToken (preregistration-free)
//	securemode=-1                  iotId + iotToken from the activation
//	                               centre's pre-auth (aliiottoken.go)
//	otherwise                      device secret, securemode 3 on plain
//	                               MQTT, 2 on MQTTS
//
// Refusals (MQTT 3.1.1 code; MQTT 5 gets the matching reason code):
//
//	2  malformed ClientId or parameters, unsupported securemode, authType
//	   or signmethod, securemode not that of the listener, registration
//	   over plain MQTT, keepalive outside 30–1200 s (not checked for
//	   registrations)
//	3  registry unavailable
//	4  malformed username (not dn&pk) or password (not hex of the sign
//	   method's size, empty token); for registrations also a wrong
//	   product-secret sign or an unknown product (reference §4.2)
//	5  unknown device, wrong sign or token, a secure_access device on
//	   plain MQTT, frozen device; for registrations: Dynamic Registration
//	   off, device secret delivered already, ClientID quota or kept
//	   ClientID, unknown (pre-registered) device
//
// Credentials are checked before the device's state, as for IoTDA.
func (h *authHook) authenticateAlibaba(ctx context.Context, cl *mochi.Client, pk packets.Packet) (*conn, *refusal) {
	cid, err := parseAliClientID(pk.Connect.ClientIdentifier)
	if err != nil {
		return nil, refuse(identifierRejected, "malformed Alibaba client id: %v", err)
	}
	if cid.SecureMode == "-1" {
		return h.aliIotToken(ctx, cl, pk)
	}
	dn, pkey, ok := parseAliUsername(pk.Connect.Username)
	if !ok {
		return nil, refuse(badCredentials, "username is not DeviceName&ProductKey")
	}
	secure := tlsState(cl) != nil
	switch cid.AuthType {
	case "register", "regnwl":
		return h.aliRegistration(ctx, cid, pkey, dn, pk.Connect.Password, secure)
	case "connwl", "":
	default:
		return nil, refuse(identifierRejected, "authType %q is not supported", cid.AuthType)
	}
	if r := checkKeepalive(pk); r != nil {
		return nil, r
	}
	var d *registry.Device
	var r *refusal
	if cid.AuthType == "connwl" || cid.SecureMode == "-2" {
		d, r = h.aliToken(ctx, cid, pkey, dn, pk.Connect.Password)
	} else {
		d, r = h.aliSecret(ctx, cid, pkey, dn, pk.Connect.Password, secure)
	}
	if r != nil {
		return nil, r
	}
	return h.aliSession(ctx, d, secure)
}

// aliSession is the connection of a device that proved itself the
// Alibaba way, unless its state refuses it.
func (h *authHook) aliSession(ctx context.Context, d *registry.Device, secure bool) (*conn, *refusal) {
	if d.Auth.SecureAccess && !secure {
		return nil, refuse(notAuthorized, "device has secure_access and must use MQTTS")
	}
	if d.Frozen {
		return nil, refuse(notAuthorized, "device is frozen")
	}
	p, err := h.reg.ProductByID(ctx, d.ProductID)
	if err != nil {
		return nil, refuse(serverUnavailable, "product lookup: %v", err)
	}
	c := &conn{device: d.DeviceID, project: d.ProjectID, self: owner{a: d.ProductID, b: d.NodeID}, spaces: aliDeviceSpaces,
		alibaba: true}
	if p.NodeType == registry.NodeGateway {
		c.gateway, c.spaces = true, aliGatewaySpaces
	}
	return c, nil
}

// aliSecret checks a device-secret sign: HMAC(DeviceSecret, sorted
// clientId, deviceName, productKey, timestamp), clientId and timestamp
// only if sent. An empty clientId is accepted signed both with and
// without its (empty) clientId parameter (C SDK 4's assigned-clientid
// mode signs it). No timestamp window: SDKs send fixed or second-based
// values.
func (h *authHook) aliSecret(ctx context.Context, cid aliClientID, pk, dn string, password []byte, secure bool) (*registry.Device, *refusal) {
	switch {
	case cid.SecureMode == "3" && secure:
		return nil, refuse(identifierRejected, "securemode 3 (plain TCP) on MQTTS")
	case cid.SecureMode == "2" && !secure:
		return nil, refuse(identifierRejected, "securemode 2 (TLS) on plain MQTT")
	case cid.SecureMode != "2" && cid.SecureMode != "3":
		return nil, refuse(identifierRejected, "securemode %q is not supported (2 TLS, 3 TCP, -2 token)", cid.SecureMode)
	}
	hash, mac, why := readSign(cid.SignMethod, password)
	if why != nil {
		return nil, why
	}
	d, r := h.aliDevice(ctx, pk, dn)
	if r != nil {
		return nil, r
	}
	h.stats.credentialChecks.Add(1)
	params := []alisign.Param{{Name: "deviceName", Value: dn}, {Name: "productKey", Value: pk}}
	if cid.HasTimestamp {
		params = append(params, alisign.Param{Name: "timestamp", Value: cid.Timestamp})
	}
	matched := false
	if cid.ClientID == "" {
		_, matched = d.MatchSecret(alisign.Proof(hash, params...), mac)
	}
	if !matched {
		params = append(params, alisign.Param{Name: "clientId", Value: cid.ClientID})
		_, matched = d.MatchSecret(alisign.Proof(hash, params...), mac)
	}
	if !matched {
		return nil, reject(notAuthorized, failedBadSecret, "wrong sign")
	}
	return d, nil
}

// aliToken checks a preregistration-free device's ClientID (the clientId
// part) and DeviceToken (the password).
func (h *authHook) aliToken(ctx context.Context, cid aliClientID, pk, dn string, password []byte) (*registry.Device, *refusal) {
	if len(password) == 0 || cid.ClientID == "" {
		return nil, refuse(badCredentials, "connwl needs the ClientID as clientId and the DeviceToken as password")
	}
	h.stats.credentialChecks.Add(1)
	d, err := h.reg.CheckClientToken(ctx, pk, dn, cid.ClientID, string(password))
	switch {
	case err == nil:
		return d, nil
	case errors.Is(err, registry.ErrNotFound):
		return nil, reject(notAuthorized, failedUnknownDevice, "unknown device")
	case errors.Is(err, registry.ErrClientIDRefused):
		return nil, reject(notAuthorized, failedBadSecret, "ClientID or DeviceToken refused")
	}
	return nil, refuse(serverUnavailable, "device lookup: %v", err)
}

func (h *authHook) aliDevice(ctx context.Context, pk, dn string) (*registry.Device, *refusal) {
	d, err := h.reg.DeviceByProductNode(ctx, pk, dn)
	if errors.Is(err, registry.ErrNotFound) {
		return nil, reject(notAuthorized, failedUnknownDevice, "unknown device")
	}
	if err != nil {
		return nil, refuse(serverUnavailable, "device lookup: %v", err)
	}
	return d, nil
}

// registrationResult is what a registration connection is sent: the
// payload for its result topic.
type registrationResult struct {
	topic   string
	payload []byte
}

// aliRegistration performs an MQTT dynamic registration (reference §4):
// the password is HMAC(ProductSecret, deviceName{dn}productKey{pk}random{r})
// and the registry either delivers a pre-registered device's secret
// (register) or issues a ClientID and DeviceToken (regnwl). The result is
// published once the CONNACK is out (see registrationHook).
func (h *authHook) aliRegistration(ctx context.Context, cid aliClientID, pk, dn string, password []byte, secure bool) (*conn, *refusal) {
	if !secure {
		return nil, refuse(identifierRejected, "dynamic registration (%s) needs MQTTS", cid.AuthType)
	}
	if cid.SecureMode != "2" && cid.SecureMode != "-2" {
		return nil, refuse(identifierRejected, "securemode %q is not one of a registration (2, -2)", cid.SecureMode)
	}
	if cid.Random == "" {
		return nil, refuse(identifierRejected, "registration without random")
	}
	hash, mac, why := readSign(cid.SignMethod, password)
	if why != nil {
		return nil, why
	}
	proof := alisign.RegistrationProof(hash, pk, dn, cid.Random)
	verify := func(p *registry.Product) bool {
		h.stats.credentialChecks.Add(1)
		return p.MatchProductSecret(proof, mac)
	}

	var res registrationResult
	var err error
	if cid.AuthType == "register" {
		var d *registry.Device
		if d, err = h.reg.DynamicRegister(ctx, pk, dn, verify); err == nil {
			res.topic = registerResultTopic
			res.payload, err = json.Marshal(map[string]string{"productKey": pk, "deviceName": dn, "deviceSecret": d.Auth.Secret})
		}
	} else {
		var c registry.ClientID
		if _, c, err = h.reg.RegisterClientID(ctx, pk, dn, verify); err == nil {
			res.topic = regnwlResultTopic
			res.payload, err = json.Marshal(map[string]string{"productKey": pk, "deviceName": dn,
				"clientId": c.ClientID, "deviceToken": c.Token})
		}
	}
	var nf *registry.NotFoundError
	switch {
	case err == nil:
		h.log.Info("device registered dynamically over MQTT", "product_id", pk, "node_id", dn, "auth_type", cid.AuthType)
		return &conn{registration: &res}, nil
	case errors.As(err, &nf) && nf.Kind == registry.EntityProduct:
		return nil, reject(badCredentials, failedUnknownDevice, "unknown product")
	case errors.Is(err, registry.ErrSignature):
		return nil, reject(badCredentials, failedBadSecret, "wrong product-secret sign")
	case errors.Is(err, registry.ErrNotFound):
		return nil, reject(notAuthorized, failedUnknownDevice, "no such pre-registered device")
	case errors.Is(err, registry.ErrDynRegDisabled):
		return nil, refuse(notAuthorized, "%v", err)
	case errors.Is(err, registry.ErrAlreadyActive), errors.Is(err, registry.ErrFrozen),
		errors.Is(err, registry.ErrQuota), errors.Is(err, registry.ErrClientIDRefused):
		return nil, refuse(notAuthorized, "registration refused: %v", err)
	}
	return nil, refuse(serverUnavailable, "registration: %v", err)
}

// registrationClientID is the mochi client id of a registration
// connection: unique, and never a device id (those have no '|'), so it
// takes over nothing and nobody's downlinks reach it.
func registrationClientID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "registration|" + hex.EncodeToString(b[:])
}
