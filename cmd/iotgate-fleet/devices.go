package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// Protocols the fleet speaks.
const (
	protoMQTT  = "mqtt"  // MQTT 3.1.1 over TCP, secret (HMAC) auth
	protoMQTTS = "mqtts" // the same over TLS
	protoCoAP  = "lwm2m" // LwM2M over CoAP, NoSec
	protoDTLS  = "dtls"  // LwM2M over CoAP over DTLS 1.2, PSK
)

var allProtocols = []string{protoMQTT, protoMQTTS, protoCoAP, protoDTLS}

// identities derives every fleet device's identity and credentials from
// its index, so that every process of a run (the coordinator, its
// workers, the password file written for mosquitto, the PSK of the bare
// DTLS server) agrees on them without exchanging lists.
type identities struct {
	prefix string // node id prefix, e.g. "fleet"
	seed   string // secrets are HMAC(seed, device_id)
}

// isLwM2M reports whether a protocol's devices belong to a CoAP product.
func isLwM2M(proto string) bool { return proto == protoCoAP || proto == protoDTLS }

// product is the product a protocol's devices belong to. LwM2M devices
// need a CoAP product (their node ids are platform-wide endpoint names).
func (ids identities) product(proto string) string {
	if isLwM2M(proto) {
		return ids.prefix + "-nb"
	}
	return ids.prefix + "-mqtt"
}

// nodeID is device i's node id (for LwM2M, its endpoint name and PSK
// identity).
func (ids identities) nodeID(proto string, i int) string {
	return fmt.Sprintf("%s-%s-%07d", ids.prefix, proto, i)
}

// deviceID is IoTDA's default device id, {product_id}_{node_id}.
func (ids identities) deviceID(proto string, i int) string {
	return ids.product(proto) + "_" + ids.nodeID(proto, i)
}

// secret is device i's secret: 32 hex characters, as IoTDA generates
// them, so that it is also a valid 16-byte PSK for CoAP products.
func (ids identities) secret(deviceID string) string {
	m := hmac.New(sha256.New, []byte(ids.seed))
	m.Write([]byte(deviceID))
	return hex.EncodeToString(m.Sum(nil))[:32]
}

// mqttPassword is the IoTDA MQTT password for a secret and a ClientId
// timestamp: lowercase hex HMAC-SHA256 with the timestamp as key and the
// secret as message.
func mqttPassword(secret, timestamp string) string {
	m := hmac.New(sha256.New, []byte(timestamp))
	m.Write([]byte(secret))
	return hex.EncodeToString(m.Sum(nil))
}

// mqttClientID is the IoTDA ClientId with sign_type 0 (timestamp not
// checked, so a run that crosses an hour boundary keeps working and
// mosquitto's password file stays valid).
func mqttClientID(deviceID, timestamp string) string {
	return deviceID + "_0_0_" + timestamp
}
