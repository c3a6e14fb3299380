// Package alisign is Alibaba Cloud IoT's device-authentication sign
// (reference alibaba-iot.md §1.2, §3, §4.1, §5.1–5.3): the signed
// parameters sorted by name, each name followed by its value with no
// separator, HMAC'd with a secret as key and sent as hex in either case.
//
// The rule is protocol-neutral: the MQTT CONNECT, the MQTT and HTTPS
// dynamic registrations and the gateway's sub-device messages differ only
// in which parameters they sign and with which secret. Checking a sign
// against a device's or a product's secrets stays the registry's
// (Device.MatchSecret, Product.MatchProductSecret), so every exchange
// compares in constant time and accepts both secret slots.
package alisign

import (
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"slices"
	"strings"

	"github.com/iotgate/iotgate/registry"
)

// DefaultMethod is the sign method of an exchange that names none
// (reference §1.3).
const DefaultMethod = "hmacmd5"

// Param is one signed parameter.
type Param struct{ Name, Value string }

// Method returns the hash of a sign method name: hmacmd5, hmacsha1 or
// hmacsha256, in any case (SDKs send "hmacsha1", documents "HmacMD5",
// sub-device logins "hmacSha256").
func Method(name string) (func() hash.Hash, bool) {
	switch strings.ToLower(name) {
	case "hmacmd5":
		return md5.New, true
	case "hmacsha1":
		return sha1.New, true
	case "hmacsha256":
		return sha256.New, true
	}
	return nil, false
}

// Content is the text Alibaba signs: params sorted by name (whatever
// order they are given in; params is sorted in place), concatenated as
// name+value.
func Content(params ...Param) []byte {
	slices.SortFunc(params, func(a, b Param) int { return strings.Compare(a.Name, b.Name) })
	n := 0
	for _, p := range params {
		n += len(p.Name) + len(p.Value)
	}
	b := make([]byte, 0, n)
	for _, p := range params {
		b = append(b, p.Name...)
		b = append(b, p.Value...)
	}
	return b
}

// Proof is what a sign over params proves: an HMAC of their Content keyed
// by the secret, hashed with h.
func Proof(h func() hash.Hash, params ...Param) registry.HMACProof {
	return registry.HMACProof{Hash: h, Data: Content(params...), SecretIsKey: true}
}

// RegistrationProof is the proof of a dynamic registration, keyed by the
// ProductSecret: over the HTTPS form (§3), the MQTT register and regnwl
// CONNECTs (§4.1) and a gateway's product_register (§5.1) alike, the
// signed parameters are deviceName, productKey and random.
func RegistrationProof(h func() hash.Hash, productKey, deviceName, random string) registry.HMACProof {
	return Proof(h, Param{"deviceName", deviceName}, Param{"productKey", productKey}, Param{"random", random})
}

// Decode decodes a hex sign, in either case, that has h's size.
func Decode(sign string, h func() hash.Hash) ([]byte, bool) {
	mac, err := hex.DecodeString(sign)
	if err != nil || len(mac) != h().Size() {
		return nil, false
	}
	return mac, true
}
