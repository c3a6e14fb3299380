package mqtt

import (
	"hash"

	"github.com/iotgate/iotgate/registry/alisign"
)

// Alibaba's sign rule is registry/alisign's; which secret and which
// parameters depend on the exchange (aliauth.go, gateway.go), and
// checking the HMAC against a device's or a product's secret is the
// registry's (MatchSecret, MatchProductSecret).

// readSign resolves a ClientId's signmethod (hmacmd5 when it names none)
// and decodes the hex sign the password carries.
func readSign(signMethod string, password []byte) (func() hash.Hash, []byte, *refusal) {
	method := signMethod
	if method == "" {
		method = alisign.DefaultMethod
	}
	h, ok := alisign.Method(method)
	if !ok {
		return nil, nil, refuse(identifierRejected, "signmethod %q is not supported (hmacmd5, hmacsha1, hmacsha256)", signMethod)
	}
	mac, ok := alisign.Decode(string(password), h)
	if !ok {
		return nil, nil, refuse(badCredentials, "password is not a hex %s sign", method)
	}
	return h, mac, nil
}
