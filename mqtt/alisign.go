package mqtt

import (
	"encoding/hex"
	"hash"
	"slices"
	"strings"

	"github.com/iotgate/iotgate/registry"
)

// Alibaba signs (reference §1.2, §4.1, §5.2–5.3): the signed parameters
// sorted by name, each name followed by its value, HMAC'd with a secret
// as key, sent as hex in either case. Which secret, and which parameters,
// depend on the exchange; checking the HMAC against a device's or a
// product's secret is the registry's (MatchSecret, MatchProductSecret).

// signParam is one signed parameter.
type signParam struct{ name, value string }

// signContent is the text Alibaba signs: the parameters sorted by name,
// concatenated as name+value without separators.
func signContent(params ...signParam) []byte {
	slices.SortFunc(params, func(a, b signParam) int { return strings.Compare(a.name, b.name) })
	var b strings.Builder
	for _, p := range params {
		b.WriteString(p.name)
		b.WriteString(p.value)
	}
	return []byte(b.String())
}

// signProof is the proof of an Alibaba sign: HMAC keyed by the secret.
func signProof(h func() hash.Hash, content []byte) registry.HMACProof {
	return registry.HMACProof{Hash: h, Data: content, SecretIsKey: true}
}

// decodeSign decodes a hex sign of the hash's size, in either case.
func decodeSign(sign string, h func() hash.Hash) ([]byte, bool) {
	mac, err := hex.DecodeString(sign)
	if err != nil || len(mac) != h().Size() {
		return nil, false
	}
	return mac, true
}

// readSign resolves a ClientId's signmethod (hmacmd5 when it names none)
// and decodes the hex sign the password carries.
func readSign(signMethod string, password []byte) (func() hash.Hash, []byte, *refusal) {
	method := signMethod
	if method == "" {
		method = "hmacmd5"
	}
	h, ok := registry.SignMethod(method)
	if !ok {
		return nil, nil, refuse(identifierRejected, "signmethod %q is not supported (hmacmd5, hmacsha1, hmacsha256)", signMethod)
	}
	mac, ok := decodeSign(string(password), h)
	if !ok {
		return nil, nil, refuse(badCredentials, "password is not a hex %s sign", method)
	}
	return h, mac, nil
}
