package regions

// Signs computed here, independently of the code under test.

import (
	"crypto/hmac"
	"encoding/hex"
	"strings"

	"github.com/iotgate/iotgate/registry"
)

func hmacOf(p registry.HMACProof, secret string) []byte {
	m := hmac.New(p.Hash, []byte(secret))
	m.Write(p.Data)
	return m.Sum(nil)
}

func hexUpper(b []byte) string { return strings.ToUpper(hex.EncodeToString(b)) }
